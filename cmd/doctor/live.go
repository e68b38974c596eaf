package doctor

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/saslgate/saslgate/mechs/rimap"
)

// Bounds of the live probes.
const (
	postconfTimeout = 10 * time.Second
	dialTimeout     = 2 * time.Second
)

// Live returns the probes that look at the running system.
func Live() Probes {
	return Probes{
		Postconf: postconf,
		Dial:     dial,
		Accounts: nssAccounts{},
		Hostname: os.Hostname,
		Rimap:    rimap.Probe,
		LookPath: func(name string) bool { _, err := exec.LookPath(name); return err == nil || inSbin(name) },
	}
}

// inSbin finds the admin commands that a non-root PATH lacks.
func inSbin(name string) bool {
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if fi, err := os.Stat(dir + "/" + name); err == nil && fi.Mode().IsRegular() {
			return true
		}
	}
	return false
}

// postconf runs `postconf -c DIR -xh NAME...`, which prints each value,
// expanded, on its own line.
func postconf(ctx context.Context, dir string, names []string) ([]string, error) {
	prog, err := exec.LookPath("postconf")
	if err != nil {
		if !inSbin("postconf") {
			return nil, fmt.Errorf("doctor: %w", err)
		}
		prog = "/usr/sbin/postconf"
		if _, err := os.Stat(prog); err != nil {
			prog = "/sbin/postconf"
		}
	}
	ctx, cancel := context.WithTimeout(ctx, postconfTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, append([]string{"-c", dir, "-xh"}, names...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("doctor: postconf -c %s: %w: %s", dir, err, strings.TrimSpace(errb.String()))
	}
	var vals []string
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		vals = append(vals, sc.Text())
	}
	if len(vals) != len(names) {
		return nil, fmt.Errorf("doctor: postconf -c %s: %d values for %d names", dir, len(vals), len(names))
	}
	return vals, nil
}

func dial(ctx context.Context, path string) error {
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	return c.Close()
}
