package workers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
)

// DefaultDevPort is the frontend port the development server prefers, the
// Temporal default, so that tools find it without flags.
const DefaultDevPort = 7233

// devClusterName names the single cluster of the development server.
const devClusterName = "active"

// DevServerOptions configures StartDevServer. The zero value is usable.
type DevServerOptions struct {
	// Port is the frontend gRPC port; 0 takes DefaultDevPort when it is
	// free, else any free port; a negative port always takes any free port
	// (tests running side by side).
	Port int
	// IP is the address every service binds to; "" means 127.0.0.1.
	IP string
	// DBFile is the SQLite database file, created with the schema when it
	// does not exist; "" keeps everything in memory for the process's life.
	DBFile string
	// Namespace is registered on start; "" means "default".
	Namespace string
	// SearchAttributes are the custom search attributes registered in the
	// namespace on start (name → type).
	SearchAttributes map[string]enums.IndexedValueType
	// Logger receives the server's log lines at warn level and above. The
	// zero value discards them.
	Logger zerolog.Logger
	// UIPort is the Temporal Web UI's HTTP port, chosen like Port: 0 takes
	// DefaultUIPort when it is free, else any free port (any free port
	// when Port is negative); negative always any free port.
	UIPort int
	// NoUI leaves the Web UI out.
	NoUI bool
}

// DevServer is an embedded single-process Temporal server (frontend,
// history, matching and worker services) on SQLite, with the Temporal Web
// UI served in the same process.
type DevServer struct {
	server    temporal.Server
	logger    serverLogger
	address   string
	namespace string
	ui        *webUI

	stopOnce sync.Once
	stopErr  error
}

// StartDevServer starts an embedded Temporal server, registers the namespace
// and the search attributes of opts, starts the Web UI (unless opts.NoUI)
// and returns once the frontend and the UI answer.
// ctx bounds the start only; call Stop to shut the server down.
func StartDevServer(ctx context.Context, opts DevServerOptions) (*DevServer, error) {
	if opts.IP == "" {
		opts.IP = "127.0.0.1"
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	port, err := choosePort(opts.IP, opts.Port, DefaultDevPort)
	if err != nil {
		return nil, fmt.Errorf("dev server: frontend: %w", err)
	}
	address := net.JoinHostPort(opts.IP, strconv.Itoa(port))

	httpPort, err := freePort(opts.IP)
	if err != nil {
		return nil, fmt.Errorf("dev server: find a port for the HTTP API: %w", err)
	}
	ports := make(map[primitives.ServiceName]int, 4)
	ports[primitives.FrontendService] = port
	for _, svc := range []primitives.ServiceName{primitives.HistoryService, primitives.MatchingService, primitives.WorkerService} {
		p, err := freePort(opts.IP)
		if err != nil {
			return nil, fmt.Errorf("dev server: find a port for the %s service: %w", svc, err)
		}
		ports[svc] = p
	}

	sqlCfg, err := devSQLConfig(opts)
	if err != nil {
		return nil, err
	}
	cfg := devServerConfig(opts.IP, address, httpPort, ports, sqlCfg)

	logger := newServerLogger(opts.Logger, zerolog.WarnLevel)
	authorizer, err := authorization.GetAuthorizerFromConfig(&cfg.Global.Authorization)
	if err != nil {
		return nil, fmt.Errorf("dev server: authorizer: %w", err)
	}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&cfg.Global.Authorization, logger)
	if err != nil {
		return nil, fmt.Errorf("dev server: claim mapper: %w", err)
	}
	hosts := make(map[primitives.ServiceName]static.Hosts, len(ports))
	for svc, p := range ports {
		hosts[svc] = static.SingleLocalHost(net.JoinHostPort(opts.IP, strconv.Itoa(p)))
	}
	dyn := dynamicconfig.StaticClient{
		// Search attributes added on start are visible to the next query.
		dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key(): true,
		// A small mutable-state cache: this is one process on a laptop.
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key(): 8192,
		// The CLI and the UI list workflows often.
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
		// One partition per task queue: with the default four, a task can
		// wait in a partition nobody polls until it is forwarded, which
		// costs seconds per activity on a one-process server.
		dynamicconfig.MatchingNumTaskqueueReadPartitions.Key():  1,
		dynamicconfig.MatchingNumTaskqueueWritePartitions.Key(): 1,
	}
	srv, err := newServer(
		temporal.WithConfig(cfg),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithDynamicConfigClient(dyn),
	)
	if err != nil {
		return nil, fmt.Errorf("dev server on %s: %w", address, err)
	}
	d := &DevServer{server: srv, logger: logger, address: address, namespace: opts.Namespace}
	if err := d.ready(ctx, opts.SearchAttributes); err != nil {
		return nil, errors.Join(err, d.Stop())
	}
	if !opts.NoUI {
		uiPort := opts.UIPort
		if uiPort == 0 && opts.Port < 0 {
			uiPort = -1 // side by side with other servers: no preferred port
		}
		if d.ui, err = startWebUI(ctx, opts.IP, uiPort, address, opts.Namespace); err != nil {
			return nil, errors.Join(fmt.Errorf("dev server: %w", err), d.Stop())
		}
	}
	return d, nil
}

// newServer creates and starts a server. A fatal log line of the server
// during either step (its logger panics with serverFatal) becomes the error.
func newServer(opts ...temporal.ServerOption) (srv temporal.Server, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(serverFatal)
			if !ok {
				panic(r)
			}
			srv, err = nil, f
		}
	}()
	srv, err = temporal.NewServer(opts...)
	if err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	return srv, nil
}

// Address returns the host:port of the frontend gRPC service, the address
// for clients, workers and `temporal --address`.
func (d *DevServer) Address() string { return d.address }

// UIAddress returns the Web UI's URL (http://127.0.0.1:8233 by default),
// or "" when the server runs without it.
func (d *DevServer) UIAddress() string {
	if d.ui == nil {
		return ""
	}
	return d.ui.url
}

// Namespace returns the namespace registered on start.
func (d *DevServer) Namespace() string { return d.namespace }

// Stop shuts the server down. Later calls return the first call's result.
func (d *DevServer) Stop() error {
	d.stopOnce.Do(func() {
		// Stopping services warn about each other's closed connections.
		d.logger.setFloor(zerolog.ErrorLevel)
		if d.ui != nil {
			d.ui.stop()
		}
		if err := d.server.Stop(); err != nil {
			d.stopErr = fmt.Errorf("dev server: stop: %w", err)
		}
	})
	return d.stopErr
}

// ready waits until the namespace answers through the frontend and adds the
// search attributes it lacks (a reused database file may predate them).
func (d *DevServer) ready(ctx context.Context, attrs map[string]enums.IndexedValueType) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{
		HostPort:  d.address,
		Namespace: d.namespace,
		Logger:    NewSDKLogger(zerolog.Nop()),
	})
	if err != nil {
		return fmt.Errorf("dev server: connect to %s: %w", d.address, err)
	}
	defer c.Close()
	for {
		_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: d.namespace})
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dev server: namespace %q not ready on %s: %w", d.namespace, d.address, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if len(attrs) == 0 {
		return nil
	}
	list, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: d.namespace})
	if err != nil {
		return fmt.Errorf("dev server: list search attributes: %w", err)
	}
	missing := make(map[string]enums.IndexedValueType)
	for name, typ := range attrs {
		have, ok := list.GetCustomAttributes()[name]
		switch {
		case !ok:
			missing[name] = typ
		case have != typ:
			return fmt.Errorf("dev server: search attribute %s is %s in the database, want %s", name, have, typ)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if _, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        d.namespace,
		SearchAttributes: missing,
	}); err != nil {
		return fmt.Errorf("dev server: add search attributes: %w", err)
	}
	return nil
}

// devSQLConfig returns the SQLite persistence config of opts, creating the
// schema of a new database file and registering the namespace (with its
// search attributes) when it does not exist yet.
func devSQLConfig(opts DevServerOptions) (*config.SQL, error) {
	sqlCfg := &config.SQL{PluginName: sqliteplugin.PluginName}
	if opts.DBFile == "" {
		// The plugin creates the schema of an in-memory database itself; a
		// random name keeps two servers in one process apart.
		sqlCfg.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
		sqlCfg.DatabaseName = "adaptq-" + strconv.FormatUint(rand.Uint64(), 36)
	} else {
		sqlCfg.ConnectAttributes = map[string]string{"mode": "rwc"}
		sqlCfg.DatabaseName = opts.DBFile
		if _, err := os.Stat(opts.DBFile); errors.Is(err, os.ErrNotExist) {
			if _, err := os.Stat(filepath.Dir(opts.DBFile)); err != nil {
				return nil, fmt.Errorf("dev server: database directory: %w", err)
			}
			if err := sqliteschema.SetupSchema(sqlCfg); err != nil {
				return nil, fmt.Errorf("dev server: create schema in %s: %w", opts.DBFile, err)
			}
		} else if err != nil {
			return nil, fmt.Errorf("dev server: database file: %w", err)
		}
	}
	ns, err := sqliteschema.NewNamespaceConfig(devClusterName, opts.Namespace, false, opts.SearchAttributes)
	if err != nil {
		return nil, fmt.Errorf("dev server: namespace %q: %w", opts.Namespace, err)
	}
	if err := sqliteschema.CreateNamespaces(sqlCfg, ns); err != nil {
		where := "the in-memory database"
		if opts.DBFile != "" {
			where = opts.DBFile
		}
		return nil, fmt.Errorf("dev server: register namespace %q in %s: %w", opts.Namespace, where, err)
	}
	return sqlCfg, nil
}

// devServerConfig is the static configuration of a single-host server:
// SQLite for both stores, one history shard, one cluster, archival off, the
// frontend's gRPC on address and its HTTP API on httpPort, the other
// services on their own ports of ip.
func devServerConfig(ip, address string, httpPort int, ports map[primitives.ServiceName]int, sqlCfg *config.SQL) *config.Config {
	var cfg config.Config
	cfg.Global.Membership.MaxJoinDuration = 30 * time.Second
	cfg.Global.Membership.BroadcastAddress = ip

	const store = "sqlite-default"
	cfg.Persistence.DefaultStore = store
	cfg.Persistence.VisibilityStore = store
	cfg.Persistence.NumHistoryShards = 1
	cfg.Persistence.DataStores = map[string]config.DataStore{store: {SQL: sqlCfg}}

	cfg.ClusterMetadata = &cluster.Config{
		EnableGlobalNamespace:    false,
		FailoverVersionIncrement: 10,
		MasterClusterName:        devClusterName,
		CurrentClusterName:       devClusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			devClusterName: {
				Enabled:                true,
				InitialFailoverVersion: 1,
				RPCAddress:             address,
				HTTPAddress:            net.JoinHostPort(ip, strconv.Itoa(httpPort)),
			},
		},
	}
	cfg.DCRedirectionPolicy.Policy = "noop"

	cfg.Services = make(map[string]config.Service, len(ports))
	for svc, p := range ports {
		var s config.Service
		s.RPC.GRPCPort = p
		s.RPC.BindOnIP = ip
		if svc == primitives.FrontendService {
			s.RPC.HTTPPort = httpPort
		}
		cfg.Services[string(svc)] = s
	}

	cfg.Archival.History.State = "disabled"
	cfg.Archival.Visibility.State = "disabled"
	cfg.NamespaceDefaults.Archival.History.State = "disabled"
	cfg.NamespaceDefaults.Archival.Visibility.State = "disabled"
	cfg.PublicClient.HostPort = address
	return &cfg
}

// portFree reports whether ip:port can be listened on now.
func portFree(ip string, port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// freePort returns a port of ip that was free a moment ago.
func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
