//go:build !unix

package sasldb

import "testing"

func mkfifo(t *testing.T, path string) {
	t.Skip("no FIFOs here")
}
