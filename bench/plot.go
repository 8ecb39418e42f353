package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"strconv"
)

// A tiny line-plot renderer (image/png only, no network, no fonts): enough
// for "time against node size" curves with log axes, a legend and labels.

// Series is one curve; points with a non-positive value on a log axis, or a
// NaN, are left out.
type Series struct {
	Name string
	X, Y []float64
}

// Plot is one chart.
type Plot struct {
	Title, XLabel, YLabel string
	LogX, LogY            bool
	// LegendRoom raises a linear y axis's top so that the curves stay
	// below the legend, which is drawn in the top-left corner.
	LegendRoom bool
	Series     []Series
}

var palette = []color.RGBA{
	{31, 119, 180, 255}, {214, 39, 40, 255}, {44, 160, 44, 255},
	{255, 127, 14, 255}, {148, 103, 189, 255}, {140, 86, 75, 255},
}

const (
	plotW, plotH                       = 900, 560
	marginL, marginR, marginT, marginB = 110, 30, 50, 70
	textScale                          = 2
)

type canvas struct{ *image.RGBA }

func (c canvas) dot(x, y int, col color.RGBA) {
	if image.Pt(x, y).In(c.Rect) {
		c.SetRGBA(x, y, col)
	}
}

func (c canvas) rect(x0, y0, x1, y1 int, col color.RGBA) {
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			c.dot(x, y, col)
		}
	}
}

// line draws a segment w pixels thick.
func (c canvas) line(x0, y0, x1, y1, w int, col color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	err := dx + dy
	for {
		c.rect(x0-w/2, y0-w/2, x0-w/2+w, y0-w/2+w, col)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * err
		if e2 >= dy {
			err += dy
			x0 += sx
		}
		if e2 <= dx {
			err += dx
			y0 += sy
		}
	}
}

// text draws s with its top-left corner at (x, y); vertical draws it
// rotated a quarter turn counter-clockwise, (x, y) then being its bottom-left.
func (c canvas) text(x, y int, s string, col color.RGBA, vertical bool) {
	for i, r := range []rune(s) {
		g := glyph(r)
		for row := range glyphH {
			for colm := range glyphW {
				if g[row][colm] != '#' {
					continue
				}
				px, py := (i*(glyphW+1)+colm)*textScale, row*textScale
				if vertical {
					c.rect(x+py, y-px-textScale, x+py+textScale, y-px, col)
				} else {
					c.rect(x+px, y+py, x+px+textScale, y+py+textScale, col)
				}
			}
		}
	}
}

func textWidth(s string) int { return len([]rune(s)) * (glyphW + 1) * textScale }

type axis struct {
	log      bool
	min, max float64
}

func (a axis) norm(v float64) float64 {
	if a.log {
		return (math.Log10(v) - math.Log10(a.min)) / (math.Log10(a.max) - math.Log10(a.min))
	}
	return (v - a.min) / (a.max - a.min)
}

func (a axis) ok(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) && (!a.log || v > 0) }

// ticks returns tick values: powers of ten on a log axis, about five round
// steps on a linear one.
func (a axis) ticks() []float64 {
	var out []float64
	if a.log {
		for e := math.Floor(math.Log10(a.min)); e <= math.Ceil(math.Log10(a.max)); e++ {
			if v := math.Pow(10, e); v >= a.min*0.999 && v <= a.max*1.001 {
				out = append(out, v)
			}
		}
		return out
	}
	step := math.Pow(10, math.Floor(math.Log10((a.max-a.min)/5)))
	for _, m := range []float64{1, 2, 5, 10} {
		if (a.max-a.min)/(step*m) <= 6 {
			step *= m
			break
		}
	}
	for v := math.Ceil(a.min/step) * step; v <= a.max+step*1e-9; v += step {
		out = append(out, v)
	}
	return out
}

func (p Plot) axes() (axis, axis, error) {
	x := axis{log: p.LogX, min: math.Inf(1), max: math.Inf(-1)}
	y := axis{log: p.LogY, min: math.Inf(1), max: math.Inf(-1)}
	for _, s := range p.Series {
		for i := range s.X {
			if x.ok(s.X[i]) && y.ok(s.Y[i]) {
				x.min, x.max = math.Min(x.min, s.X[i]), math.Max(x.max, s.X[i])
				y.min, y.max = math.Min(y.min, s.Y[i]), math.Max(y.max, s.Y[i])
			}
		}
	}
	if math.IsInf(x.min, 0) {
		return x, y, fmt.Errorf("plot %q: no points", p.Title)
	}
	widen := func(a *axis) {
		if a.log {
			a.min, a.max = math.Pow(10, math.Floor(math.Log10(a.min))), math.Pow(10, math.Ceil(math.Log10(a.max)))
			if a.min == a.max {
				a.max *= 10
			}
			return
		}
		if a.min > 0 {
			a.min = 0
		}
		if a.max == a.min {
			a.max = a.min + 1
		}
		a.max *= 1.05
	}
	widen(&x)
	widen(&y)
	if p.LegendRoom && !y.log {
		y.max /= 1 - float64(legendHeight(len(p.Series)))/float64(plotH-marginB-marginT)
	}
	return x, y, nil
}

func formatTick(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 1e6 && math.Abs(v) == math.Pow(10, math.Round(math.Log10(math.Abs(v)))):
		return "1E" + strconv.Itoa(int(math.Round(math.Log10(v))))
	case math.Abs(v) >= 1:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

// WritePNG renders the plot into path.
func (p Plot) WritePNG(path string) error {
	xa, ya, err := p.axes()
	if err != nil {
		return err
	}
	img := canvas{image.NewRGBA(image.Rect(0, 0, plotW, plotH))}
	white, black, grey := color.RGBA{255, 255, 255, 255}, color.RGBA{0, 0, 0, 255}, color.RGBA{225, 225, 225, 255}
	img.rect(0, 0, plotW, plotH, white)
	x0, x1, y0, y1 := marginL, plotW-marginR, plotH-marginB, marginT
	px := func(v float64) int { return x0 + int(math.Round(xa.norm(v)*float64(x1-x0))) }
	py := func(v float64) int { return y0 - int(math.Round(ya.norm(v)*float64(y0-y1))) }
	for _, t := range xa.ticks() {
		img.line(px(t), y0, px(t), y1, 1, grey)
		l := formatTick(t)
		img.text(px(t)-textWidth(l)/2, y0+8, l, black, false)
	}
	for _, t := range ya.ticks() {
		img.line(x0, py(t), x1, py(t), 1, grey)
		l := formatTick(t)
		img.text(x0-8-textWidth(l), py(t)-glyphH*textScale/2, l, black, false)
	}
	img.line(x0, y0, x1, y0, 2, black)
	img.line(x0, y0, x0, y1, 2, black)
	img.text((plotW-textWidth(p.Title))/2, 14, p.Title, black, false)
	img.text((x0+x1-textWidth(p.XLabel))/2, plotH-28, p.XLabel, black, false)
	img.text(14, (y0+y1+textWidth(p.YLabel))/2, p.YLabel, black, true)
	for i, s := range p.Series {
		col := palette[i%len(palette)]
		lastX, lastY, have := 0, 0, false
		for j := range s.X {
			if !xa.ok(s.X[j]) || !ya.ok(s.Y[j]) {
				have = false
				continue
			}
			cx, cy := px(s.X[j]), py(s.Y[j])
			img.rect(cx-4, cy-4, cx+4, cy+4, col)
			if have {
				img.line(lastX, lastY, cx, cy, 3, col)
			}
			lastX, lastY, have = cx, cy, true
		}
		ly := y1 + 10 + i*legendLine
		img.rect(x0+16, ly+3, x0+40, ly+11, col)
		img.text(x0+48, ly, s.Name, black, false)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img.RGBA); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// legendLine is the height of one legend entry; legendHeight that of n.
const legendLine = 22

func legendHeight(n int) int { return 10 + n*legendLine }

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}
