package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// metric is one measured value of a part, a column of its tables.
type metric struct {
	name     string
	decimals int
}

// result is one run: a scenario against one server in one round; values follow the part's
// metrics, and err says why the run failed (values are then nil).
type result struct {
	server, scenario string
	round            int
	values           []float64
	err              error
}

// summary is the result on one line, for the progress log.
func (r result) summary(p *part) string {
	if r.err != nil {
		return "FAILED: " + r.err.Error()
	}
	fields := make([]string, len(p.metrics))
	for i, m := range p.metrics {
		fields[i] = m.name + "=" + formatValue(r.values[i], m.decimals)
	}
	return strings.Join(fields, ", ")
}

func formatValue(v float64, decimals int) string {
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

// printReport writes the report twice to stdout: plain text, then Markdown to paste into
// BENCHMARKS.md.
func printReport(e *env, opts options, parts []*part, results map[string][]result, elapsed time.Duration) {
	blocks := reportBlocks(e, opts, parts, results, elapsed)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for _, b := range blocks {
		b.plain(w)
	}
	fmt.Fprint(w, "\n==================== Markdown ====================\n\n")
	for _, b := range blocks {
		b.markdown(w)
	}
}

func reportBlocks(e *env, opts options, parts []*part, results map[string][]result, elapsed time.Duration) []block {
	blocks := []block{
		heading("TURN benchmark: Ferry vs coturn"),
		para(environment(e, opts, elapsed)),
		para("Each run starts a fresh server process; coturn and Ferry take turns and never run at once. " +
			"Server CPU is user+system time from /proc/PID/stat over the load; peak RSS is VmHWM of the run's process. " +
			"Other CPU is the CPU time of every other process during the load (/proc/*/stat, kernel threads " +
			"included, but not turnbench and its children): well above a few hundredths of a second, the run " +
			"competed with other work. Each run first waits (up to " + quietWait.String() +
			") until other processes use less than " + strconv.FormatFloat(quietBusy, 'f', -1, 64) + " CPU. " +
			"Medians are over rounds; the Ferry/coturn ratio is taken per round, then its median and range."),
		para("coturn:"),
		code("turnserver " + strings.Join(coturnArgs("TMPDIR", "PORT"), " ")),
		para("Ferry (`ferry serve --config ferry.toml`, users file written by `ferry user add bench --realm " + benchRealm + "`):"),
		code(ferryConfig("TMPDIR/users.toml", "PORT")),
	}
	for _, p := range parts {
		blocks = append(blocks, heading(p.title))
		for _, n := range p.notes {
			blocks = append(blocks, para(n))
		}
		blocks = append(blocks, runsTable(p, results[p.name]), mediansTable(p, results[p.name]))
	}
	blocks = append(blocks,
		heading("Ferry/coturn"),
		para("The ratio of each part's main metric, per round; below 1 Ferry needs less where lower is better, "+
			"above 1 it does more where higher is better."),
		ratiosTable(parts, results))
	return blocks
}

// environment describes the machine and the versions measured.
func environment(e *env, opts options, elapsed time.Duration) string {
	return fmt.Sprintf("%s; %s, %d CPUs, Linux %s; coturn %s; %s (%s); %s; %d rounds, %s in all.",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), cpuModel(), runtime.NumCPU(),
		firstLine(os.ReadFile("/proc/sys/kernel/osrelease")),
		firstLine(exec.Command("turnserver", "--version").Output()),
		firstLine(exec.Command(e.ferryBin, "--version").Output()), opts.ferryBin,
		runtime.Version(), opts.rounds, elapsed.Round(time.Second))
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.Lines(string(data)) {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "unknown CPU"
}

// firstLine is the first line of a command's output or a file, or "unknown".
func firstLine(out []byte, err error) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil || line == "" {
		return "unknown"
	}
	return line
}

// runsTable has one row per run, in the order they ran.
func runsTable(p *part, results []result) *table {
	t := &table{title: p.title + ": runs", header: append(textColumns("server", "scenario"),
		append(numberColumns("round"), metricColumns(p)...)...)}
	failed := slices.ContainsFunc(results, func(r result) bool { return r.err != nil })
	if failed {
		t.header = append(t.header, textColumns("failure")...)
	}
	for _, r := range results {
		row := []string{r.server, r.scenario, strconv.Itoa(r.round)}
		for i, m := range p.metrics {
			if r.err != nil {
				row = append(row, "-")
			} else {
				row = append(row, formatValue(r.values[i], m.decimals))
			}
		}
		if failed {
			row = append(row, failureText(r.err))
		}
		t.rows = append(t.rows, row)
	}
	return t
}

// failureText is the first line of a run's error, short enough for a table cell.
func failureText(err error) string {
	if err == nil {
		return ""
	}
	line, _, _ := strings.Cut(err.Error(), "\n")
	return strings.ReplaceAll(line, "|", "/")
}

// mediansTable has one row per scenario and server: the median of every metric over the
// successful runs.
func mediansTable(p *part, results []result) *table {
	t := &table{title: p.title + ": medians", header: append(textColumns("scenario", "server"),
		append(numberColumns("runs ok"), metricColumns(p)...)...)}
	for _, sc := range p.scenarios {
		for _, kind := range serverKinds {
			ok, all := okResults(results, sc.name, kind.name)
			row := []string{sc.name, kind.name, fmt.Sprintf("%d/%d", len(ok), all)}
			for i, m := range p.metrics {
				row = append(row, formatMedian(metricValues(ok, i), m.decimals))
			}
			t.rows = append(t.rows, row)
		}
	}
	return t
}

func metricColumns(p *part) []column {
	cols := make([]column, len(p.metrics))
	for i, m := range p.metrics {
		cols[i] = column{name: m.name, right: true}
	}
	return cols
}

// okResults returns the successful runs of a scenario on a server, and how many ran.
func okResults(results []result, scenario, server string) (ok []result, all int) {
	for _, r := range results {
		if r.scenario != scenario || r.server != server {
			continue
		}
		all++
		if r.err == nil {
			ok = append(ok, r)
		}
	}
	return ok, all
}

// ratiosTable has one row per scenario of every part: the medians of the part's key metric
// and the median and range of the per-round ratio Ferry/coturn.
func ratiosTable(parts []*part, results map[string][]result) *table {
	t := &table{title: "Ferry/coturn ratios", header: append(textColumns("scenario", "metric", "better"),
		numberColumns("coturn", "ferry", "ferry/coturn", "min-max", "rounds")...)}
	for _, p := range parts {
		key := slices.IndexFunc(p.metrics, func(m metric) bool { return m.name == p.key })
		m := p.metrics[key]
		better := "lower"
		if p.higherIsBetter {
			better = "higher"
		}
		for _, sc := range p.scenarios {
			coturn, _ := okResults(results[p.name], sc.name, "coturn")
			ferry, _ := okResults(results[p.name], sc.name, "ferry")
			ratios := roundRatios(coturn, ferry, key)
			row := []string{sc.name, m.name, better,
				formatMedian(metricValues(coturn, key), m.decimals), formatMedian(metricValues(ferry, key), m.decimals),
				formatMedian(ratios, 2), "-", strconv.Itoa(len(ratios))}
			if len(ratios) > 0 {
				row[6] = formatValue(slices.Min(ratios), 2) + "-" + formatValue(slices.Max(ratios), 2)
			}
			t.rows = append(t.rows, row)
		}
	}
	return t
}

// roundRatios pairs the runs of the same round and returns ferry/coturn of metric key for
// each round where both succeeded.
func roundRatios(coturn, ferry []result, key int) []float64 {
	var ratios []float64
	for _, f := range ferry {
		for _, c := range coturn {
			if c.round == f.round && c.values[key] != 0 {
				ratios = append(ratios, f.values[key]/c.values[key])
			}
		}
	}
	return ratios
}

// metricValues is metric i of every result.
func metricValues(results []result, i int) []float64 {
	values := make([]float64, len(results))
	for j, r := range results {
		values[j] = r.values[i]
	}
	return values
}

func formatMedian(values []float64, decimals int) string {
	if len(values) == 0 {
		return "-"
	}
	return formatValue(median(values), decimals)
}

func median(values []float64) float64 {
	s := slices.Sorted(slices.Values(values))
	mid := len(s) / 2
	if len(s)%2 == 1 {
		return s[mid]
	}
	return (s[mid-1] + s[mid]) / 2
}

// block is a piece of the report, rendered as plain text or as Markdown.
type block interface {
	plain(w io.Writer)
	markdown(w io.Writer)
}

type heading string

func (h heading) plain(w io.Writer) {
	fmt.Fprintf(w, "%s\n%s\n\n", h, strings.Repeat("=", utf8.RuneCountInString(string(h))))
}

func (h heading) markdown(w io.Writer) { fmt.Fprintf(w, "## %s\n\n", h) }

type para string

func (p para) plain(w io.Writer)    { fmt.Fprintf(w, "%s\n\n", p) }
func (p para) markdown(w io.Writer) { fmt.Fprintf(w, "%s\n\n", p) }

// code is preformatted text: a command line or a configuration file.
type code string

func (c code) plain(w io.Writer) {
	for line := range strings.Lines(string(c)) {
		fmt.Fprintln(w, strings.TrimRight("    "+line, " \n"))
	}
	fmt.Fprintln(w)
}

func (c code) markdown(w io.Writer) {
	fmt.Fprintf(w, "```\n%s\n```\n\n", strings.TrimSuffix(string(c), "\n"))
}

// table is a titled table; numbers are aligned right, text left.
type table struct {
	title  string
	header []column
	rows   [][]string
}

type column struct {
	name  string
	right bool
}

// textColumns and numberColumns make header columns aligned left and right.
func textColumns(names ...string) []column { return columns(false, names) }

func numberColumns(names ...string) []column { return columns(true, names) }

func columns(right bool, names []string) []column {
	cols := make([]column, len(names))
	for i, name := range names {
		cols[i] = column{name: name, right: right}
	}
	return cols
}

func (t *table) headerCells() []string {
	names := make([]string, len(t.header))
	for i, c := range t.header {
		names[i] = c.name
	}
	return names
}

// widths are the widths of the columns in runes, at least minWidth.
func (t *table) widths(minWidth int) []int {
	widths := make([]int, len(t.header))
	for _, row := range append([][]string{t.headerCells()}, t.rows...) {
		for i, cell := range row {
			widths[i] = max(widths[i], minWidth, utf8.RuneCountInString(cell))
		}
	}
	return widths
}

// line joins a row's cells padded to widths.
func (t *table) line(cells []string, widths []int, sep string) string {
	padded := make([]string, len(cells))
	for i, cell := range cells {
		fill := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell))
		if t.header[i].right {
			padded[i] = fill + cell
		} else {
			padded[i] = cell + fill
		}
	}
	return strings.Join(padded, sep)
}

func (t *table) plain(w io.Writer) {
	fmt.Fprintf(w, "%s\n\n", t.title)
	widths := t.widths(0)
	for _, row := range append([][]string{t.headerCells()}, t.rows...) {
		fmt.Fprintf(w, "  %s\n", strings.TrimRight(t.line(row, widths, "  "), " "))
	}
	fmt.Fprintln(w)
}

func (t *table) markdown(w io.Writer) {
	fmt.Fprintf(w, "**%s**\n\n", t.title)
	widths := t.widths(3) // "---" is the shortest rule
	rule := make([]string, len(t.header))
	for i, c := range t.header {
		rule[i] = strings.Repeat("-", widths[i])
		if c.right {
			rule[i] = rule[i][1:] + ":"
		}
	}
	fmt.Fprintf(w, "| %s |\n", t.line(t.headerCells(), widths, " | "))
	fmt.Fprintf(w, "| %s |\n", strings.Join(rule, " | "))
	for _, row := range t.rows {
		fmt.Fprintf(w, "| %s |\n", t.line(row, widths, " | "))
	}
	fmt.Fprintln(w)
}
