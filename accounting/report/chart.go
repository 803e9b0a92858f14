package report

import (
	"fmt"
	"io"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Chart draws a collaboration's monthly core-hours stacked by member, as
// SVG or PNG, from rows grouped by month then user (Query{By:
// "month,user"}): what its reporting contacts see of its use. A
// perMonth above 0 (its allocation's share of a month) is drawn as a
// dashed line across.
func Chart(w io.Writer, format, collaboration string, rows []Row, perMonth float64) error {
	switch format {
	case "svg", "png":
	default:
		return fmt.Errorf("unknown chart format %q (want svg or png)", format)
	}
	if len(rows) == 0 {
		return fmt.Errorf("no usage of %s to draw in the period", collaboration)
	}
	var months, users []string
	hours := map[[2]string]float64{}
	for _, r := range rows {
		if len(r.Keys) != 2 {
			return fmt.Errorf("a chart needs rows by month and user, got keys %v", r.Keys)
		}
		month, user := r.Keys[0], r.Keys[1]
		if !slices.Contains(months, month) {
			months = append(months, month)
		}
		if !slices.Contains(users, user) {
			users = append(users, user)
		}
		hours[[2]string{month, user}] += r.CoreHours
	}
	slices.Sort(months)
	slices.Sort(users)
	p := plot.New()
	p.Title.Text = "Core-hours of " + collaboration + " by month and member"
	p.Y.Label.Text = "core-hours"
	p.X.Label.Text = "month"
	p.Legend.Top = true
	width := vg.Points(max(12, 240/float64(max(1, len(months)))))
	var below *plotter.BarChart
	for i, user := range users {
		values := make(plotter.Values, len(months))
		for m, month := range months {
			values[m] = hours[[2]string{month, user}]
		}
		bars, err := plotter.NewBarChart(values, width)
		if err != nil {
			return fmt.Errorf("chart: %w", err)
		}
		bars.Color = plotutil.Color(i)
		bars.LineStyle.Width = 0
		if below != nil {
			bars.StackOn(below)
		}
		below = bars
		p.Add(bars)
		p.Legend.Add(user, bars)
	}
	if perMonth > 0 {
		line, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: perMonth}, {X: float64(len(months)) - 0.5, Y: perMonth}})
		if err != nil {
			return fmt.Errorf("chart: %w", err)
		}
		line.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
		line.Width = vg.Points(1.5)
		p.Add(line)
		p.Legend.Add(fmt.Sprintf("allocation: %.4g a month", perMonth), line)
	}
	p.NominalX(months...)
	// Every month's bar whole, and room above the highest for the legend.
	p.X.Min, p.X.Max = -0.5, float64(len(months))-0.5
	highest := 0.0
	for _, month := range months {
		sum := 0.0
		for _, user := range users {
			sum += hours[[2]string{month, user}]
		}
		highest = max(highest, sum)
	}
	highest = max(highest, perMonth)
	p.Y.Min, p.Y.Max = 0, highest*(1.1+0.06*float64(len(users)))
	wt, err := p.WriterTo(8*vg.Inch, 4.5*vg.Inch, format)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	_, err = wt.WriteTo(w)
	return err
}
