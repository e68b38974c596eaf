package shadow

import (
	"fmt"
	"os"
	"testing"

	"github.com/saslgate/saslgate/mechs"
	"github.com/saslgate/saslgate/mechs/internal/unixpw"
)

// TestMain: without cgo on Linux there is nothing to test but the refusal
// to start.
func TestMain(m *testing.M) {
	if !unixpw.Supported {
		if _, err := New(mechs.Options{}, nil); err == nil {
			fmt.Println("FAIL: New succeeded in a build without cgo")
			os.Exit(1)
		}
		fmt.Println("ok: New refuses to start; the rest needs cgo on Linux")
		os.Exit(0)
	}
	os.Exit(m.Run())
}
