package main

// Line charts as SVG, written by hand so that the benchmark needs no
// plotting library: a log2 x axis (the concurrency), a linear or log10 y
// axis, one line per daemon with a marker per point and a whisker from the
// slowest to the fastest round.

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/saslgate/saslgate/test/internal/runreport"
)

// series is one daemon's line.
type series struct {
	name   string
	color  string
	dashed bool
	square bool      // square markers (else circles), so the lines differ without colour
	xs, ys []float64 // the concurrency levels and the median values
	lo, hi []float64 // the whisker of each point (may be nil)
}

// chart is one plot.
type chart struct {
	title, yLabel string
	logY          bool
	series        []series
}

const (
	svgW, svgH                      = 560, 330
	padL, padR, padTop, padBottom   = 70, 20, 52, 50
	plotW, plotH                    = svgW - padL - padR, svgH - padTop - padBottom
	fontAttrs                       = `font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12"`
	gridColor, axisColor, textColor = "#dddddd", "#555555", "#222222"
)

// axis maps data values onto pixels, linearly or in log space.
type axis struct {
	lo, hi float64 // in the transformed space (log10 or log2 where logged)
	log    float64 // the log base, 0 for linear
	px0    float64 // pixel of lo
	pxLen  float64 // pixels from lo to hi, negative for the y axis
}

func (a axis) t(v float64) float64 {
	if a.log > 0 {
		return math.Log(v) / math.Log(a.log)
	}
	return v
}

func (a axis) px(v float64) float64 {
	span := a.hi - a.lo
	if span == 0 {
		return a.px0 + a.pxLen/2
	}
	return a.px0 + (a.t(v)-a.lo)/span*a.pxLen
}

// linearTicks are the ticks of a linear axis from 0 to at least max.
func linearTicks(max float64) []float64 {
	if max <= 0 {
		max = 1
	}
	step := runreport.NiceStep(max, 5)
	var ts []float64
	for i := 0; ; i++ {
		v := float64(i) * step // no running sum: it would drift
		ts = append(ts, v)
		if v >= max {
			return ts
		}
	}
}

// logTicks are 1, 2, 5 times the powers of ten that cover [min, max].
func logTicks(min, max float64) []float64 {
	if min <= 0 {
		min = max / 1000
	}
	if max <= min {
		max = min * 10
	}
	lo, hi := math.Floor(math.Log10(min)), math.Ceil(math.Log10(max))
	var ts []float64
	for e := lo; e <= hi; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v >= math.Pow(10, lo) && v <= math.Pow(10, hi) {
				ts = append(ts, v)
			}
		}
	}
	// drop the ticks beyond the data's next 1-2-5 step on each side
	first, last := 0, len(ts)-1
	for first+1 < len(ts) && ts[first+1] <= min {
		first++
	}
	for last-1 >= 0 && ts[last-1] >= max {
		last--
	}
	return ts[first : last+1]
}

// label formats a tick value with at most three significant digits.
func label(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 1000:
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// svg renders the chart.
func (c chart) svg() []byte {
	var xs, ys []float64
	for _, s := range c.series {
		xs = append(xs, s.xs...)
		ys = append(ys, s.ys...)
		ys = append(ys, s.lo...)
		ys = append(ys, s.hi...)
	}
	// the x axis always spans 1..256, so that every plot reads the same
	xmin, xmax := bounds(append(xs, 1, 256), 1, 256)
	x := axis{lo: math.Log2(xmin), hi: math.Log2(xmax), log: 2, px0: padL, pxLen: plotW}
	_, ymax := bounds(ys, 0, 1)
	var yt []float64
	var y axis
	if c.logY {
		yt = logTicks(positiveMin(ys), ymax)
		y = axis{lo: math.Log10(yt[0]), hi: math.Log10(yt[len(yt)-1]), log: 10, px0: padTop + plotH, pxLen: -plotH}
	} else {
		yt = linearTicks(ymax)
		y = axis{lo: 0, hi: yt[len(yt)-1], px0: padTop + plotH, pxLen: -plotH}
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" %s>`+"\n",
		svgW, svgH, svgW, svgH, fontAttrs)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", svgW, svgH)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold" fill="%s">%s</text>`+"\n", padL, textColor, runreport.Escape(c.title))

	// grid and ticks
	for _, v := range yt {
		py := y.px(v)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n", padL, py, padL+plotW, py, gridColor)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="%s">%s</text>`+"\n", padL-6, py+4, textColor, label(v))
	}
	for v := xmin; v <= xmax; v *= 2 {
		px := x.px(v)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`+"\n", px, padTop, px, padTop+plotH, gridColor)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="%s">%s</text>`+"\n", px, padTop+plotH+16, textColor, label(v))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="%s"/>`+"\n", padL, padTop, plotW, plotH, axisColor)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" fill="%s">concurrent clients (C, log scale)</text>`+"\n",
		padL+plotW/2, svgH-10, textColor)
	fmt.Fprintf(&b, `<text x="16" y="%d" text-anchor="middle" fill="%s" transform="rotate(-90 16 %d)">%s</text>`+"\n",
		padTop+plotH/2, textColor, padTop+plotH/2, runreport.Escape(c.yLabel))

	// legend, in the top margin
	lx := float64(padL)
	for _, s := range c.series {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="38" x2="%.1f" y2="38" stroke="%s" stroke-width="2"%s/>`, lx, lx+24, s.color, dash(s))
		b.WriteString(marker(s, lx+12, 38))
		fmt.Fprintf(&b, `<text x="%.1f" y="42" fill="%s">%s</text>`+"\n", lx+30, textColor, runreport.Escape(s.name))
		lx += 40 + 7.5*float64(len(s.name))
	}

	// the lines, whiskers and markers
	for _, s := range c.series {
		var pts [][2]float64
		for i := range s.xs {
			if c.logY && s.ys[i] <= 0 {
				continue
			}
			pts = append(pts, [2]float64{x.px(s.xs[i]), y.px(s.ys[i])})
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", s.color, dash(s), runreport.Points(pts))
		for i := range s.xs {
			px := x.px(s.xs[i])
			if i < len(s.lo) && i < len(s.hi) && (!c.logY || s.lo[i] > 0) {
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5"/>`+"\n",
					px, y.px(s.lo[i]), px, y.px(s.hi[i]), s.color)
			}
			if c.logY && s.ys[i] <= 0 {
				continue
			}
			b.WriteString(marker(s, px, y.px(s.ys[i])))
			b.WriteString("\n")
		}
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

func dash(s series) string {
	if s.dashed {
		return ` stroke-dasharray="6 4"`
	}
	return ""
}

func marker(s series, x, y float64) string {
	if s.square {
		return fmt.Sprintf(`<rect x="%.1f" y="%.1f" width="8" height="8" fill="%s"/>`, x-4, y-4, s.color)
	}
	return fmt.Sprintf(`<circle cx="%.1f" cy="%.1f" r="4.5" fill="%s"/>`, x, y, s.color)
}

// bounds is the smallest and largest of vs, or the defaults when vs is
// empty; a single value is widened so that an axis never has zero span.
func bounds(vs []float64, dlo, dhi float64) (float64, float64) {
	if len(vs) == 0 {
		return dlo, dhi
	}
	lo, hi := vs[0], vs[0]
	for _, v := range vs {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	if lo == hi {
		if lo > 0 {
			return lo / 2, hi * 2
		}
		return dlo, dhi
	}
	return lo, hi
}

func positiveMin(vs []float64) float64 {
	m := math.Inf(1)
	for _, v := range vs {
		if v > 0 {
			m = math.Min(m, v)
		}
	}
	if math.IsInf(m, 1) {
		return 1
	}
	return m
}
