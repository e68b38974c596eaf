// Package runreport holds what the two long-running measurement programs
// under test/ share in the reports they write (benchcmp's BENCHMARKS.md and
// charts, soak's SOAK.md and plot): the small pieces of their hand-written
// SVG, which keep them free of a plotting library, and the description of
// the machine the numbers were taken on.
package runreport

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// NiceStep is a 1, 2 or 5 times a power of ten that cuts span into at most
// n steps, so that tick labels read as round numbers.
func NiceStep(span float64, n int) float64 {
	if span <= 0 || n < 1 {
		return 1
	}
	raw := span / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// Escape makes s safe as SVG text or as a quoted attribute value.
func Escape(s string) string { return html.EscapeString(s) }

// Points is the points attribute of a polyline through xy, at a tenth of
// a pixel: finer adds bytes, not sharpness.
func Points(xy [][2]float64) string {
	ps := make([]string, len(xy))
	for i, p := range xy {
		ps[i] = fmt.Sprintf("%.1f,%.1f", p[0], p[1])
	}
	return strings.Join(ps, " ")
}
