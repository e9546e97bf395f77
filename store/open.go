package store

import (
	"fmt"
	"net/url"
	"strings"
)

// Open returns the store at a location: a directory path, "file:///path",
// or "s3://bucket/prefix" (endpoint and credentials from the environment,
// see NewS3FromEnv).
func Open(location string) (Store, error) {
	switch {
	case strings.HasPrefix(location, "s3://"):
		u, err := url.Parse(location)
		if err != nil {
			return nil, fmt.Errorf("location %q: %w", location, err)
		}
		if u.User != nil {
			return nil, fmt.Errorf("location %q: credentials do not belong in a location; set %s and %s", u.Redacted(), EnvAccessKey, EnvSecretKey)
		}
		if u.Host == "" {
			return nil, fmt.Errorf("location %q: no bucket", location)
		}
		return NewS3FromEnv(u.Host, strings.Trim(u.Path, "/"))
	case strings.HasPrefix(location, "file://"):
		u, err := url.Parse(location)
		if err != nil {
			return nil, fmt.Errorf("location %q: %w", location, err)
		}
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("location %q: file URLs name a local path (file:///path)", location)
		}
		return NewLocal(u.Path)
	case strings.Contains(location, "://"):
		return nil, fmt.Errorf("location %q: unsupported scheme (use a path, file:// or s3://)", location)
	case location == "":
		return nil, fmt.Errorf("empty location")
	}
	return NewLocal(location)
}

// SplitObject splits the location of one object ("dir/file",
// "s3://bucket/prefix/file", or a bare "file") into the location of its
// folder, for Open, and its key there.
func SplitObject(location string) (dir, key string, err error) {
	loc := strings.TrimRight(location, "/")
	i := strings.LastIndex(loc, "/")
	switch {
	case loc == "":
		return "", "", fmt.Errorf("empty object location")
	case i < 0:
		return ".", loc, nil
	case strings.HasSuffix(loc[:i], ":/"): // "s3://bucket": no object
		return "", "", fmt.Errorf("location %q names a bucket or root, not an object", location)
	}
	return loc[:i], loc[i+1:], nil
}
