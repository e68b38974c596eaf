package main

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// elements decodes doc and returns its start elements, failing t if doc
// is not well-formed XML.
func elements(t *testing.T, doc []byte) []xml.StartElement {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	var out []xml.StartElement
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, doc)
		}
		if se, ok := tok.(xml.StartElement); ok {
			out = append(out, se.Copy())
		}
	}
}

func attr(se xml.StartElement, name string) string {
	for _, a := range se.Attr {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func attrF(t *testing.T, se xml.StartElement, name string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(attr(se, name), 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, attr(se, name), err)
	}
	return v
}

func testChart(logY bool) chart {
	xs := []float64{1, 8, 64, 256}
	return chart{title: "a <b> & c", yLabel: "y", logY: logY, series: []series{
		{name: "Cyrus saslauthd", color: "#d95f02", dashed: true, square: true, xs: xs,
			ys: []float64{0.3, 2, 90, 400}, lo: []float64{0.2, 1.5, 80, 300}, hi: []float64{0.4, 3, 100, 500}},
		{name: "saslgate", color: "#1b7fb3", xs: xs, ys: []float64{0.2, 1, 15, 60}},
	}}
}

func TestChartSVG(t *testing.T) {
	for _, logY := range []bool{false, true} {
		t.Run("logY="+strconv.FormatBool(logY), func(t *testing.T) {
			doc := testChart(logY).svg()
			els := elements(t, doc)
			var circles, squares []xml.StartElement
			for _, e := range els {
				switch {
				case e.Name.Local == "circle":
					circles = append(circles, e)
				case e.Name.Local == "rect" && attr(e, "width") == "8":
					squares = append(squares, e)
				}
			}
			// a marker per point, and one in the legend
			if len(circles) != 5 || len(squares) != 5 {
				t.Fatalf("%d circles and %d squares, want 5 and 5", len(circles), len(squares))
			}
			// the log2 x axis: C=1 at the left edge, 256 at the right, 16 half way
			xs := []float64{}
			for _, c := range circles[1:] {
				xs = append(xs, attrF(t, c, "cx"))
			}
			want := []float64{padL, padL + plotW*3/8.0, padL + plotW*6/8.0, padL + plotW}
			for i := range want {
				if math.Abs(xs[i]-want[i]) > 0.1 {
					t.Errorf("x of point %d: %.1f, want %.1f", i, xs[i], want[i])
				}
			}
			// larger values are higher up (smaller y)
			ys := []float64{}
			for _, c := range circles[1:] {
				ys = append(ys, attrF(t, c, "cy"))
			}
			if !slices.IsSortedFunc(ys, func(a, b float64) int { return -cmpF(a, b) }) {
				t.Errorf("y of rising values not decreasing: %v", ys)
			}
			for _, y := range ys {
				if y < padTop-0.1 || y > padTop+plotH+0.1 {
					t.Errorf("y %.1f outside the plot [%d, %d]", y, padTop, padTop+plotH)
				}
			}
			if !bytes.Contains(doc, []byte("a &lt;b&gt; &amp; c")) {
				t.Errorf("title not escaped:\n%s", doc)
			}
			if !bytes.Contains(doc, []byte(`stroke-dasharray`)) {
				t.Error("Cyrus's line is not dashed")
			}
		})
	}
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// A chart of a single point (a quick run at one concurrency) still has
// an axis with a span, and a flat line of zeros on a log axis is left out
// rather than drawn at -Inf.
func TestChartDegenerate(t *testing.T) {
	for _, c := range []chart{
		{title: "one", series: []series{{name: "x", color: "#000", xs: []float64{8}, ys: []float64{100}}}},
		{title: "zeros", logY: true, series: []series{{name: "x", color: "#000", xs: []float64{1, 8}, ys: []float64{0, 0}}}},
		{title: "empty", series: nil},
	} {
		doc := c.svg()
		elements(t, doc)
		if s := string(doc); strings.Contains(s, "NaN") || strings.Contains(s, "Inf") {
			t.Errorf("%s: NaN or Inf in the SVG:\n%s", c.title, s)
		}
	}
}

func TestLogTicks(t *testing.T) {
	for _, tc := range []struct {
		min, max float64
		want     []float64
	}{
		{0.2, 40, []float64{0.2, 0.5, 1, 2, 5, 10, 20, 50}},
		{0.35, 0.9, []float64{0.2, 0.5, 1}},
		{3, 3, []float64{2, 5, 10, 20, 50}}, // a single value gets a decade
		{120, 5000, []float64{100, 200, 500, 1000, 2000, 5000}},
	} {
		got := logTicks(tc.min, tc.max)
		if len(got) != len(tc.want) {
			t.Errorf("logTicks(%g, %g) = %v, want %v", tc.min, tc.max, got, tc.want)
			continue
		}
		for i := range got {
			if math.Abs(got[i]-tc.want[i]) > 1e-9*tc.want[i] {
				t.Errorf("logTicks(%g, %g) = %v, want %v", tc.min, tc.max, got, tc.want)
				break
			}
		}
	}
}

func TestLinearTicks(t *testing.T) {
	for _, tc := range []struct {
		max  float64
		want []float64
	}{
		{7321, []float64{0, 2000, 4000, 6000, 8000}},
		{100, []float64{0, 20, 40, 60, 80, 100}},
		{0, []float64{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1}},
		{37.5, []float64{0, 10, 20, 30, 40}},
	} {
		if got := linearTicks(tc.max); !slices.Equal(got, tc.want) {
			t.Errorf("linearTicks(%g) = %v, want %v", tc.max, got, tc.want)
		}
	}
}

func TestLabel(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 0.2: "0.2", 0.5: "0.5", 1: "1", 20: "20", 500: "500", 2000: "2000", 12000: "12000", 0.125: "0.125"} {
		if got := label(v); got != want {
			t.Errorf("label(%g) = %q, want %q", v, got, want)
		}
	}
}
