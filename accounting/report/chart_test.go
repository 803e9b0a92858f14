package report

import (
	"bytes"
	"encoding/xml"
	"image/png"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestChart: the SVG's bars are the data (per member, month by month,
// stacked), its texts the title, the months and the members; the PNG
// decodes at the size asked, with a colour per member.
func TestChart(t *testing.T) {
	rows := []Row{
		{Keys: []string{"2026-10", "alice"}, CoreHours: 2},
		{Keys: []string{"2026-11", "alice"}, CoreHours: 1},
		{Keys: []string{"2026-11", "bob"}, CoreHours: 3},
	}
	var b bytes.Buffer
	// An allocation of 30 core-hours a year: 2.5 a month.
	if err := Chart(&b, "svg", "atlas", rows, 2.5); err != nil {
		t.Fatal(err)
	}
	var texts []string
	var horizontal []float64          // y of horizontal stroked lines
	base := math.Inf(1)               // the bars' baseline (gonum's SVG y grows upwards)
	heights := map[string][]float64{} // fill colour → bar heights, left to right
	corner := regexp.MustCompile(`[ML]([0-9.]+),([0-9.]+)`)
	dec := xml.NewDecoder(&b)
	inText := false
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch e := tok.(type) {
		case xml.StartElement:
			inText = e.Name.Local == "text"
			if e.Name.Local != "path" {
				continue
			}
			var d, style string
			for _, a := range e.Attr {
				switch a.Name.Local {
				case "d":
					d = a.Value
				case "style":
					style = a.Value
				}
			}
			var xs, ys []float64
			for _, m := range corner.FindAllStringSubmatch(d, -1) {
				x, _ := strconv.ParseFloat(m[1], 64)
				y, _ := strconv.ParseFloat(m[2], 64)
				xs, ys = append(xs, x), append(ys, y)
			}
			if strings.HasPrefix(style, "fill:none") && len(xs) == 2 && ys[0] == ys[1] && xs[1]-xs[0] > 100 {
				horizontal = append(horizontal, ys[0])
			}
			fill, ok := strings.CutPrefix(style, "fill:#")
			if !ok || fill == "FFFFFF" {
				continue
			}
			if len(xs) == 4 && xs[2]-xs[0] > 40 {
				base = min(base, ys[0], ys[1])
			}
			if len(xs) == 4 && xs[2]-xs[0] > 40 { // a bar, not a legend swatch
				heights[fill] = append(heights[fill], math.Abs(ys[1]-ys[0]))
			}
		case xml.CharData:
			if inText {
				texts = append(texts, strings.TrimSpace(string(e)))
			}
		case xml.EndElement:
			inText = false
		}
	}
	for _, want := range []string{"Core-hours of atlas by month and member", "2026-10", "2026-11", "alice", "bob", "core-hours", "allocation: 2.5 a month"} {
		if !strings.Contains(strings.Join(texts, "|"), want) {
			t.Errorf("no text %q in %q", want, texts)
		}
	}
	if len(heights) != 2 {
		t.Fatalf("bars of %d colours, want one per member: %v", len(heights), heights)
	}
	// Whichever colour is alice's has her October (2) and November (1)
	// bars; bob's November bar (3) sits on her November one.
	var alice, bob []float64
	for _, hs := range heights {
		if nonzero(hs) == 2 {
			alice = hs
		} else {
			bob = hs
		}
	}
	unit := alice[1]
	if len(alice) != 2 || len(bob) != 2 || math.Abs(alice[0]/unit-2) > 0.01 || math.Abs(bob[1]/unit-3) > 0.01 || bob[0] > 0.01 {
		t.Errorf("bar heights alice %v, bob %v; want 2:1 and 0:3 in the same unit", alice, bob)
	}
	if !slices.ContainsFunc(horizontal, func(y float64) bool { return math.Abs((y-base)/unit-2.5) < 0.02 }) {
		t.Errorf("no allocation line 2.5 units above the baseline %.1f (unit %.1f): horizontal lines at %v", base, unit, horizontal)
	}

	b.Reset()
	if err := Chart(&b, "png", "atlas", rows, 0); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatal(err)
	}
	if sz := img.Bounds().Size(); sz.X != 768 || sz.Y != 432 {
		t.Errorf("png %v, want 768x432 (8 x 4.5 in at 96 dpi)", sz)
	}
	colours := map[[3]uint32]bool{}
	for x := 0; x < img.Bounds().Dx(); x += 4 {
		for y := 0; y < img.Bounds().Dy(); y += 4 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
		}
	}
	if len(colours) < 4 { // background, axes and text, two members
		t.Errorf("png has %d colours", len(colours))
	}
	if err := Chart(&b, "svg", "atlas", nil, 0); err == nil {
		t.Error("a chart of no usage drawn")
	}
	if err := Chart(&b, "gif", "atlas", rows, 0); err == nil {
		t.Error("gif accepted")
	}
}

func nonzero(hs []float64) int {
	n := 0
	for _, h := range hs {
		if h > 0.01 {
			n++
		}
	}
	return n
}
