//go:build !amd64

package kernels

import "github.com/ohms-project/adaptq/quant"

// registerAsm has no assembly kernels to add on this architecture.
func registerAsm(map[quant.Type]*qtype) {}
