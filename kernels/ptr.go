package kernels

import "unsafe"

// ptrAdd returns p advanced by n float32 values.
func ptrAdd(p *float32, n int) *float32 {
	return (*float32)(unsafe.Add(unsafe.Pointer(p), n*4))
}
