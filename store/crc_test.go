package store_test

import (
	"hash"
	"hash/crc32"
)

func newCRC() hash.Hash32 { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) }
