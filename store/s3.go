package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Environment variables read by NewS3FromEnv. Credentials come only from the
// environment (or the instance's IAM role) and never from a location string,
// so they do not reach workflow inputs, logs or manifests.
const (
	EnvEndpoint  = "ADAPTQ_S3_ENDPOINT" // host:port or http(s)://host:port; falls back to AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL
	EnvTLS       = "ADAPTQ_S3_TLS"      // "true" or "false"; default from the endpoint's scheme, else true
	EnvRegion    = "AWS_REGION"
	EnvAccessKey = "AWS_ACCESS_KEY_ID"
	EnvSecretKey = "AWS_SECRET_ACCESS_KEY"
	EnvSession   = "AWS_SESSION_TOKEN"
)

// PartSize is the multipart part size of streaming uploads: the memory one
// upload of unknown size holds at a time.
const PartSize = 16 << 20

// maxSinglePut is the largest object S3 accepts in one PUT.
const maxSinglePut = 5 << 30

// S3Config is where an S3 store lives. It carries no credentials.
type S3Config struct {
	Endpoint string // host[:port]
	Secure   bool   // TLS
	Region   string
	Bucket   string
	Prefix   string // key prefix without leading or trailing slash
}

// S3 is a Store over an S3-compatible bucket and key prefix.
type S3 struct {
	cfg    S3Config
	creds  *credentials.Credentials
	client *minio.Client
	core   minio.Core
}

// S3ConfigFromEnv fills the endpoint, TLS and region of a config from the
// environment (see the Env constants).
func S3ConfigFromEnv(bucket, prefix string) (S3Config, error) {
	cfg := S3Config{Bucket: bucket, Prefix: strings.Trim(prefix, "/"), Secure: true, Region: os.Getenv(EnvRegion)}
	ep := os.Getenv(EnvEndpoint)
	for _, alt := range []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"} {
		if ep == "" {
			ep = os.Getenv(alt)
		}
	}
	if ep == "" {
		ep = "s3.amazonaws.com"
	}
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil {
			return cfg, fmt.Errorf("S3 endpoint %q: %w", ep, err)
		}
		cfg.Secure = u.Scheme == "https"
		ep = u.Host
	}
	cfg.Endpoint = ep
	if v := os.Getenv(EnvTLS); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return cfg, fmt.Errorf("%s=%q: want true or false", EnvTLS, v)
		}
		cfg.Secure = b
	}
	return cfg, nil
}

// NewS3FromEnv opens an S3 store with the endpoint and credentials of the
// environment: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (and
// AWS_SESSION_TOKEN) when set, otherwise the instance's IAM role.
func NewS3FromEnv(bucket, prefix string) (*S3, error) {
	cfg, err := S3ConfigFromEnv(bucket, prefix)
	if err != nil {
		return nil, err
	}
	var creds *credentials.Credentials
	if ak := os.Getenv(EnvAccessKey); ak != "" {
		creds = credentials.NewStaticV4(ak, os.Getenv(EnvSecretKey), os.Getenv(EnvSession))
	} else {
		creds = credentials.NewChainCredentials([]credentials.Provider{&credentials.EnvMinio{}, &credentials.IAM{}})
	}
	return NewS3(cfg, creds)
}

// NewS3 opens an S3 store with explicit credentials.
func NewS3(cfg S3Config, creds *credentials.Credentials) (*S3, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("S3 store: empty bucket name")
	}
	cfg.Prefix = strings.Trim(cfg.Prefix, "/")
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:           creds,
		Secure:          cfg.Secure,
		Region:          cfg.Region,
		TrailingHeaders: true,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 store %s: %w", cfg.Endpoint, err)
	}
	return &S3{cfg: cfg, creds: creds, client: client, core: minio.Core{Client: client}}, nil
}

// Client is the underlying minio-go client (for server-side operations
// such as ComposeObject).
func (s *S3) Client() *minio.Client { return s.client }

// Config returns the store's configuration.
func (s *S3) Config() S3Config { return s.cfg }

// Location implements Store.
func (s *S3) Location() string {
	if s.cfg.Prefix == "" {
		return "s3://" + s.cfg.Bucket
	}
	return "s3://" + s.cfg.Bucket + "/" + s.cfg.Prefix
}

// ObjectName maps a store key to the bucket's object name.
func (s *S3) ObjectName(key string) (string, error) {
	c, err := CleanKey(key)
	if err != nil {
		return "", err
	}
	if s.cfg.Prefix == "" {
		return c, nil
	}
	return s.cfg.Prefix + "/" + c, nil
}

// EnsureBucket creates the store's bucket if it does not exist.
func (s *S3) EnsureBucket(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.cfg.Bucket)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", s.cfg.Bucket, err)
	}
	if ok {
		return nil
	}
	if err := s.client.MakeBucket(ctx, s.cfg.Bucket, minio.MakeBucketOptions{Region: s.cfg.Region}); err != nil {
		if minio.ToErrorResponse(err).Code == "BucketAlreadyOwnedByYou" {
			return nil
		}
		return fmt.Errorf("create bucket %s: %w", s.cfg.Bucket, err)
	}
	return nil
}

// CheckCredentials resolves the store's credentials (asking the IAM role
// when none are in the environment, within ctx) and returns an error
// matching ErrNoCredentials when there are none: every request would then
// be anonymous and refused.
func (s *S3) CheckCredentials(ctx context.Context) error {
	v, err := s.creds.GetWithContext(&credentials.CredContext{Context: ctx})
	if err != nil {
		return fmt.Errorf("%s: %w: %w", s.Location(), ErrNoCredentials, err)
	}
	if v.AccessKeyID == "" {
		return fmt.Errorf("%s: %w", s.Location(), ErrNoCredentials)
	}
	return nil
}

// deniedCodes are the S3 error codes of a request the store refuses for
// who sent it: no, wrong or expired credentials, or no permission.
var deniedCodes = map[string]bool{"AccessDenied": true, "InvalidAccessKeyId": true, "SignatureDoesNotMatch": true,
	"InvalidToken": true, "ExpiredToken": true, "AllAccessDisabled": true, "AccountProblem": true}

func (s *S3) wrap(op, key string, err error) error {
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.StatusCode == http.StatusForbidden || deniedCodes[resp.Code]:
		return fmt.Errorf("%s %s: %w", op, Describe(s, key), deniedError{err})
	case resp.StatusCode == http.StatusNotFound || resp.Code == "NoSuchKey":
		return fmt.Errorf("%s %s: %w", op, Describe(s, key), ErrNotFound)
	case resp.StatusCode == http.StatusPreconditionFailed || resp.Code == "PreconditionFailed":
		return fmt.Errorf("%s %s: %w", op, Describe(s, key), ErrExists)
	}
	return fmt.Errorf("%s %s: %w", op, Describe(s, key), err)
}

// Get implements Store.
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	name, err := s.ObjectName(key)
	if err != nil {
		return nil, err
	}
	rc, _, _, err := s.core.GetObject(ctx, s.cfg.Bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.wrap("get", key, err)
	}
	return rc, nil
}

// GetRange implements Store with one ranged GET.
func (s *S3) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if offset < 0 || length < 0 {
		return nil, fmt.Errorf("%s: invalid range offset %d length %d", Describe(s, key), offset, length)
	}
	if length == 0 {
		if _, err := s.Stat(ctx, key); err != nil {
			return nil, err
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	name, err := s.ObjectName(key)
	if err != nil {
		return nil, err
	}
	var opts minio.GetObjectOptions
	if err := opts.SetRange(offset, offset+length-1); err != nil {
		return nil, fmt.Errorf("%s: %w", Describe(s, key), err)
	}
	rc, info, _, err := s.core.GetObject(ctx, s.cfg.Bucket, name, opts)
	if err != nil {
		if minio.ToErrorResponse(err).StatusCode == http.StatusRequestedRangeNotSatisfiable {
			return nil, fmt.Errorf("%s: range [%d, %d) beyond the object: %w", Describe(s, key), offset, offset+length, ErrRange)
		}
		return nil, s.wrap("get range of", key, err)
	}
	if info.Size != length {
		rc.Close()
		return nil, fmt.Errorf("%s: range [%d, %d) beyond the object (got %d bytes): %w", Describe(s, key), offset, offset+length, info.Size, ErrRange)
	}
	return rc, nil
}

func (s *S3) put(ctx context.Context, key string, r io.Reader, size int64, ifAbsent bool) (ObjectInfo, error) {
	name, err := s.ObjectName(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	opts := minio.PutObjectOptions{
		PartSize:    PartSize,
		Checksum:    minio.ChecksumFullObjectCRC32C,
		ContentType: "application/octet-stream",
	}
	if ifAbsent {
		opts.SetMatchETagExcept("*")
		// A single PUT with If-None-Match is atomic on S3 and MinIO.
		if size >= 0 && size <= maxSinglePut {
			opts.DisableMultipart = true
		}
	}
	if _, err := s.client.PutObject(ctx, s.cfg.Bucket, name, r, size, opts); err != nil {
		return ObjectInfo{}, s.wrap("put", key, err)
	}
	return s.Stat(ctx, key)
}

// Put implements Store. Objects of unknown or large size are streamed in
// PartSize parts.
func (s *S3) Put(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	return s.put(ctx, key, r, size, false)
}

// PutIfAbsent implements Store with If-None-Match: *. Objects of known size
// up to 5 GiB go in one atomic PUT.
func (s *S3) PutIfAbsent(ctx context.Context, key string, r io.Reader, size int64) (ObjectInfo, error) {
	return s.put(ctx, key, r, size, true)
}

// Stat implements Store; Checksum is the object's full CRC-32C when it was
// uploaded with one (every adaptq upload is).
func (s *S3) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	name, err := s.ObjectName(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	info, err := s.client.StatObject(ctx, s.cfg.Bucket, name, minio.StatObjectOptions{Checksum: true})
	if err != nil {
		return ObjectInfo{}, s.wrap("stat", key, err)
	}
	c, _ := CleanKey(key)
	return s.info(c, info), nil
}

func (s *S3) info(key string, info minio.ObjectInfo) ObjectInfo {
	out := ObjectInfo{Key: key, Size: info.Size, ETag: info.ETag, ModTime: info.LastModified}
	if info.ChecksumCRC32C != "" && !strings.Contains(info.ChecksumCRC32C, "-") {
		out.Checksum = "crc32c:" + info.ChecksumCRC32C
	}
	return out
}

// List implements Store.
func (s *S3) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	full := prefix
	if s.cfg.Prefix != "" {
		full = s.cfg.Prefix + "/" + prefix
	}
	var out []ObjectInfo
	for obj := range s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: full, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("list %s: %w", Describe(s, prefix), obj.Err)
		}
		key := obj.Key
		if s.cfg.Prefix != "" {
			key = strings.TrimPrefix(key, s.cfg.Prefix+"/")
		}
		out = append(out, s.info(key, obj))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements Store.
func (s *S3) Delete(ctx context.Context, key string) error {
	name, err := s.ObjectName(key)
	if err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, name, minio.RemoveObjectOptions{}); err != nil {
		if errors.Is(s.wrap("delete", key, err), ErrNotFound) {
			return nil
		}
		return s.wrap("delete", key, err)
	}
	return nil
}

// MinComposePart is S3's smallest part of a composed object (all but the
// last part).
const MinComposePart = 5 << 20

// Part is a byte range of a stored object, for Compose.
type Part struct {
	Key            string
	Offset, Length int64
}

// Compose builds the object dst server-side from ranges of other objects of
// the same store (S3 ComposeObject: no bytes pass through this process).
// Every part but the last must be at least MinComposePart bytes. The source
// ranges are pinned to the ETags they have now.
func (s *S3) Compose(ctx context.Context, dst string, parts []Part) (ObjectInfo, error) {
	dname, err := s.ObjectName(dst)
	if err != nil {
		return ObjectInfo{}, err
	}
	srcs := make([]minio.CopySrcOptions, 0, len(parts))
	for i, p := range parts {
		if p.Length <= 0 || (i < len(parts)-1 && p.Length < MinComposePart) {
			return ObjectInfo{}, fmt.Errorf("compose %s: part %d (%s) of %d bytes: parts but the last need %d bytes", Describe(s, dst), i, p.Key, p.Length, MinComposePart)
		}
		name, err := s.ObjectName(p.Key)
		if err != nil {
			return ObjectInfo{}, err
		}
		info, err := s.Stat(ctx, p.Key)
		if err != nil {
			return ObjectInfo{}, err
		}
		srcs = append(srcs, minio.CopySrcOptions{Bucket: s.cfg.Bucket, Object: name, MatchETag: info.ETag,
			MatchRange: true, Start: p.Offset, End: p.Offset + p.Length - 1})
	}
	if _, err := s.client.ComposeObject(ctx, minio.CopyDestOptions{Bucket: s.cfg.Bucket, Object: dname}, srcs...); err != nil {
		return ObjectInfo{}, s.wrap("compose", dst, err)
	}
	return s.Stat(ctx, dst)
}
