package sasldb

import "testing"

// FuzzParse feeds the reader damaged and hostile files. It must return a
// result or an error wrapping ErrFormat, never panic, loop or allocate more
// than the input holds. Seeds are the committed saslpasswd2 files; crashers
// found are kept in testdata/fuzz/FuzzParse.
//
//	go test -run='^$' -fuzz=FuzzParse -fuzztime=120s ./mechs/sasldb/
func FuzzParse(f *testing.F) {
	for _, fx := range fixtures() {
		b := readTestdata(f, fx.file)
		f.Add(b)
		f.Add(b[:minPageSize]) // metadata alone
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkParse(t, b)
	})
}
