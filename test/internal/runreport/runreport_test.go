package runreport

import (
	"encoding/xml"
	"os"
	"strings"
	"testing"
)

func TestNiceStep(t *testing.T) {
	for _, tc := range []struct {
		span float64
		n    int
		want float64
	}{{100, 4, 50}, {37, 4, 10}, {2058, 4, 1000}, {300, 10, 50}, {0.7, 4, 0.2}, {0, 4, 1}, {-5, 4, 1}, {100, 0, 1}, {7321, 5, 2000}} {
		if got := NiceStep(tc.span, tc.n); got != tc.want {
			t.Errorf("NiceStep(%v, %d) = %v, want %v", tc.span, tc.n, got, tc.want)
		}
	}
}

// Escaped text survives an XML parser unchanged, in an element and in an
// attribute.
func TestEscape(t *testing.T) {
	for _, s := range []string{`a <b> & c`, `say "hi"`, `it's`, `plain`, ``} {
		doc := `<svg a="` + Escape(s) + `"><text>` + Escape(s) + `</text></svg>`
		var v struct {
			A    string `xml:"a,attr"`
			Text string `xml:"text"`
		}
		if err := xml.Unmarshal([]byte(doc), &v); err != nil {
			t.Fatalf("%q: %v\n%s", s, err, doc)
		}
		if v.A != s || v.Text != s {
			t.Errorf("%q came back as attribute %q and text %q", s, v.A, v.Text)
		}
	}
}

func TestPoints(t *testing.T) {
	for _, tc := range []struct {
		xy   [][2]float64
		want string
	}{
		{nil, ""},
		{[][2]float64{{70, 52.25}}, "70.0,52.2"},
		{[][2]float64{{1, 2}, {3.14159, -4.06}}, "1.0,2.0 3.1,-4.1"},
	} {
		if got := Points(tc.xy); got != tc.want {
			t.Errorf("Points(%v) = %q, want %q", tc.xy, got, tc.want)
		}
	}
}

func TestCPUModel(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nmodel name\t: other\n", "Intel(R) Xeon(R) CPU @ 2.20GHz"},
		{"processor : 0\nmodel\t\t: 85\n", "unknown CPU"}, // "model" is not "model name"
		{"model name without a colon\n", "unknown CPU"},
		{"", "unknown CPU"},
	} {
		if got := cpuModel(tc.in); got != tc.want {
			t.Errorf("cpuModel(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestKernelRelease(t *testing.T) {
	want, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	if got := KernelRelease(); got != strings.TrimSpace(string(want)) {
		t.Errorf("KernelRelease() = %q, want %q", got, strings.TrimSpace(string(want)))
	}
}
