//go:build !linux || !cgo

package pam

import "github.com/saslgate/saslgate/mechs"

// supported is false: this build has no cgo or is not for Linux, so there
// is no libpam to call. The package still compiles so that the mechanism
// says so at start instead of breaking the build.
const supported = false

func confDirSupported() bool { return false }

func runTxn(*txnRequest) txnResult {
	return txnResult{Stage: stageStart, Code: -1, Msg: "built without PAM support (needs cgo on Linux)"}
}

func verdict(r txnResult) mechs.Verdict {
	if r.Stage == stageOK {
		return mechs.Accept
	}
	return mechs.TempFail
}

func dieBySignal() bool { return false }
