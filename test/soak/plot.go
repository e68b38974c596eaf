package main

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/saslgate/saslgate/test/internal/runreport"
)

// The plot's geometry, in SVG user units.
const (
	plotW, panelH, panelGap = 960.0, 150.0, 34.0
	marginL, marginR        = 70.0, 20.0
	marginT, marginB        = 56.0, 40.0
)

// series is one panel: a value per sample, and the baseline drawn across.
type series struct {
	title, unit string
	color       string
	get         func(sample) float64
	base        float64
}

// plotSVG draws RSS, goroutines (threads without --metrics) and open
// descriptors over time, one panel each, with the fault windows shaded,
// SIGHUP and SIGTERM marked, and each baseline dashed.
func plotSVG(res *result) string {
	r := res.r
	xs := res.series
	g := series{title: "goroutines", color: "#2a7", get: func(x sample) float64 { return float64(x.Goroutines) }, base: float64(r.baseline.Goroutines)}
	if !r.metrics {
		g = series{title: "threads (no --metrics)", color: "#2a7", get: func(x sample) float64 { return float64(x.Threads) }, base: float64(r.baseline.Threads)}
	}
	panels := []series{
		{title: "RSS", unit: "MiB", color: "#c33", get: func(x sample) float64 { return float64(x.RSS) / (1 << 20) }, base: float64(r.baseline.RSS) / (1 << 20)},
		g,
		{title: "open descriptors", color: "#36c", get: func(x sample) float64 { return float64(x.FDs) }, base: float64(r.baseline.FDs)},
	}
	height := marginT + float64(len(panels))*(panelH+panelGap) + marginB
	tmax := 1.0
	if len(xs) > 0 {
		tmax = math.Max(1, xs[len(xs)-1].T.Seconds())
	}
	innerW := plotW - marginL - marginR
	px := func(t time.Duration) float64 { return marginL + innerW*t.Seconds()/tmax }

	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="11">`+"\n",
		plotW, height, plotW, height)
	w(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	w(`<text x="%.0f" y="18" font-size="14">saslgate soak: the daemon every second (%s)</text>`+"\n", marginL, runreport.Escape(r.p.total.String()))
	top, bottom := marginT, marginT+float64(len(panels))*(panelH+panelGap)-panelGap

	// fault windows and phases behind everything
	colors := []string{"#fde2c4", "#fff3b0", "#f8c8d0", "#e0d4f5", "#d4ecf7"}
	for i, win := range r.windows {
		x0, x1 := px(win.Start), px(win.End)
		w(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" opacity="0.7"><title>%s</title></rect>`+"\n",
			x0, top, math.Max(1, x1-x0), bottom-top, colors[i%len(colors)], runreport.Escape(win.What))
		w(`<text x="%.1f" y="%.1f" font-size="9" fill="#555">%s</text>`+"\n", x0+2, top-4-float64(i%2)*10, runreport.Escape(shortWindow(win.What)))
	}
	for _, e := range r.events {
		var label, color, dash string
		switch {
		case strings.HasPrefix(e.What, "SIGHUP"):
			label, color, dash = "HUP", "#888", "4 3"
		case e.What == "SIGTERM":
			label, color, dash = "TERM", "#c00", ""
		case strings.HasPrefix(e.What, "main phase"):
			label, color, dash = "load + faults", "#444", "1 3"
		case strings.HasPrefix(e.What, "load stopped"):
			label, color, dash = "load stops", "#444", "1 3"
		default:
			continue
		}
		x := px(e.T)
		w(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="%s"/>`+"\n", x, top, x, bottom, color, dash)
		anchor, tx := "start", x+2
		if x > plotW-marginR-60 { // no room on the right
			anchor, tx = "end", x-2
		}
		w(`<text x="%.1f" y="%.1f" font-size="9" fill="%s" text-anchor="%s">%s</text>`+"\n", tx, bottom+12, color, anchor, label)
	}

	for i, s := range panels {
		y0 := marginT + float64(i)*(panelH+panelGap)
		vmax := s.base
		for _, x := range xs {
			vmax = math.Max(vmax, s.get(x))
		}
		step := runreport.NiceStep(vmax, 4)
		vtop := math.Max(step, math.Ceil(vmax/step)*step)
		py := func(v float64) float64 { return y0 + panelH - panelH*v/vtop }
		w(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`+"\n", marginL, y0, innerW, panelH)
		title := s.title
		if s.unit != "" {
			title += " (" + s.unit + ")"
		}
		w(`<text x="%.1f" y="%.1f" font-weight="bold">%s</text>`+"\n", marginL+4, y0+12, runreport.Escape(title))
		for v := 0.0; v <= vtop+step/2; v += step {
			w(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", marginL, py(v), marginL+innerW, py(v))
			w(`<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", marginL-4, py(v)+4, trimFloat(v))
		}
		w(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="6 4" opacity="0.6"><title>baseline</title></line>`+"\n",
			marginL, py(s.base), marginL+innerW, py(s.base), s.color)
		var pts [][2]float64
		for _, x := range xs {
			if v := s.get(x); v >= 0 {
				pts = append(pts, [2]float64{px(x.T), py(v)})
			}
		}
		w(`<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", s.color, runreport.Points(pts))
	}
	step := runreport.NiceStep(tmax, 10)
	for t := 0.0; t <= tmax; t += step {
		x := marginL + innerW*t/tmax
		w(`<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, bottom+26, trimFloat(t)+" s")
	}
	w("</svg>\n")
	return b.String()
}

func shortWindow(s string) string {
	s, _, _ = strings.Cut(s, " (")
	return s
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.1f", v)
	return strings.TrimSuffix(s, ".0")
}
