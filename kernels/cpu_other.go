//go:build !amd64

package kernels

func hasF16C() bool { return false }
