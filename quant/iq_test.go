package quant

// hasRefQuantizer reports whether QuantizeRef works for typ without an
// importance (the i-quants are dequantize-only until their quantizers land).
func hasRefQuantizer(typ Type) bool { return typ.codec().quantize != nil }
