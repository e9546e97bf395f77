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
		if u.Path == "" {
			return nil, fmt.Errorf("location %q names no path (file:///path)", location)
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
// "s3://bucket/prefix/file", "file:///dir/file", or a bare "file") into the
// location of its folder, for Open, and its key there. A folder part that
// is empty is the root of its file system ("/file" is in "/",
// "file:///file" in "file:///") or, for a bare name, the working directory.
func SplitObject(location string) (dir, key string, err error) {
	scheme, rest := "", location
	if i := strings.Index(location, "://"); i >= 0 {
		scheme, rest = location[:i+3], location[i+3:]
	}
	rest = strings.TrimRight(rest, "/")
	switch {
	case location == "":
		return "", "", fmt.Errorf("empty object location")
	case rest == "":
		return "", "", fmt.Errorf("location %q names a root or bucket, not an object", location)
	}
	i := strings.LastIndex(rest, "/")
	switch {
	case scheme == "" && i < 0:
		return ".", rest, nil
	case scheme == "" && i == 0:
		return "/", rest[1:], nil
	case scheme == "file://" && i >= 0 && !strings.Contains(rest[:i], "/"):
		// "file:///x" is in "file:///", "file://localhost/x" in "file://localhost/".
		return scheme + rest[:i] + "/", rest[i+1:], nil
	case scheme != "" && i < 0: // "s3://bucket": no object
		return "", "", fmt.Errorf("location %q names a root or bucket, not an object", location)
	}
	return scheme + rest[:i], rest[i+1:], nil
}
