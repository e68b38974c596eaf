package commands

import (
	"slices"
	"testing"
)

func TestCheckpassword_SetEnv(t *testing.T) {
	for i, tc := range []struct {
		env  []string
		want []string
	}{
		{nil, []string{"USER=dave"}},
		{[]string{"PATH=/bin", "USER=root", "HOME=/root", "USER=again"}, []string{"PATH=/bin", "HOME=/root", "USER=dave"}},
		{[]string{"USERNAME=x", "XUSER=y"}, []string{"USERNAME=x", "XUSER=y", "USER=dave"}},
	} {
		in := slices.Clone(tc.env)
		if got := setEnv(in, "USER", "dave"); !slices.Equal(got, tc.want) {
			t.Errorf("case %d: %q, want %q", i, got, tc.want)
		}
		if !slices.Equal(in, tc.env) {
			t.Errorf("case %d: the input was changed to %q", i, in)
		}
	}
}

func TestCheckpassword_UcspiRemote(t *testing.T) {
	for i, tc := range []struct {
		ip, port string
		want     string
		ok       bool
	}{
		{"192.0.2.9", "4242", "192.0.2.9;4242", true},
		{"2001:db8::1", "", "2001:db8::1", true},
		{"::ffff:10.1.2.3", "25", "10.1.2.3;25", true},
		{"192.0.2.9", "99999", "192.0.2.9", true},
		{"192.0.2.9", "x;y", "192.0.2.9", true},
		{"", "25", "", false},
		{"host.example", "25", "", false},
		{"192.0.2.9\n", "25", "", false},
	} {
		t.Setenv("TCPREMOTEIP", tc.ip)
		t.Setenv("TCPREMOTEPORT", tc.port)
		if got, ok := ucspiRemote(); got != tc.want || ok != tc.ok {
			t.Errorf("case %d: %q, %v; want %q, %v", i, got, ok, tc.want, tc.ok)
		}
	}
}
