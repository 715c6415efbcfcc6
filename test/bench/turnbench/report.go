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
// metrics, window is the usage of its measured window, and err says why the run failed
// (values are then nil). tries is how many times its round ran.
type result struct {
	server, scenario string
	round            int
	values           []float64
	window           usage
	tries            int
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
	fields = append(fields, fmt.Sprintf("other CPU s=%.2f (%.1f%% of wall)", r.window.other, 100*r.window.otherShare()))
	if r.window.contention > 0 {
		fields = append(fields, fmt.Sprintf("contention CPU s=%.2f", r.window.contention))
	}
	return strings.Join(fields, ", ")
}

// noisy tells whether other processes took more than maxOther of the run's wall time.
func (r result) noisy(maxOther float64) bool {
	return r.err == nil && r.window.otherShare() > maxOther
}

func formatValue(v float64, decimals int) string {
	return strconv.FormatFloat(v, 'f', decimals, 64)
}

// printReport writes the report twice to stdout: plain text, then Markdown to paste into
// BENCHMARKS.md.
func printReport(e *env, opts options, results map[string][]result, elapsed time.Duration) {
	blocks := reportBlocks(e, opts, results, elapsed)
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

func reportBlocks(e *env, opts options, results map[string][]result, elapsed time.Duration) []block {
	blocks := []block{
		heading("TURN benchmark: Ferry vs coturn " + modeName(opts.contention)),
		para(environment(e, opts, elapsed)),
		para("Each run starts a fresh server process; coturn and Ferry take turns and never run at once. " +
			"Server CPU is user+system time from /proc/PID/stat over the load; peak RSS is VmHWM of the run's process. " +
			"Other CPU is the CPU time of every other process during the load (/proc/*/stat, kernel threads " +
			"included, but not turnbench and its children: the servers, turnutils_uclient, turnutils_peer and " +
			"the contention processes); other % is that time as a share of the run's wall time. Each run first " +
			"waits (up to " + quietWait.String() + ") until other processes use less than " +
			strconv.FormatFloat(quietBusy, 'f', -1, 64) + " CPU. " + rerunRule(opts) + " " +
			"Medians are over rounds, noisy runs included; the Ferry/coturn ratio is taken per round, then its median and range."),
		para(modeText(opts.contention)),
		para(rerunSummary(opts, results)),
		para("coturn:"),
		code("turnserver " + strings.Join(coturnArgs("TMPDIR", "PORT"), " ")),
		para("Ferry (`ferry serve --config ferry.toml`, users file written by `ferry user add bench --realm " + benchRealm + "`):"),
		code(ferryConfig("TMPDIR/users.toml", "PORT")),
	}
	for _, p := range opts.parts {
		blocks = append(blocks, heading(p.title))
		for _, n := range p.notes {
			blocks = append(blocks, para(n))
		}
		blocks = append(blocks, runsTable(opts, p, results[p.name]), mediansTable(opts, p, results[p.name]))
	}
	ratiosTitle := "Ferry/coturn"
	if opts.contention > 0 {
		ratiosTitle += " " + contentionMode(opts.contention)
	}
	blocks = append(blocks,
		heading(ratiosTitle),
		para("The ratio of each part's main metric, per round; below 1 Ferry needs less where lower is better, "+
			"above 1 it does more where higher is better. Noisy rounds: rounds with a noisy run."),
		ratiosTable(opts, results))
	return blocks
}

// modeName names the mode for the report's heading.
func modeName(contention int) string {
	if contention == 0 {
		return "(no added contention)"
	}
	return contentionMode(contention)
}

// modeText says what the mode means.
func modeText(contention int) string {
	if contention == 0 {
		return "Mode: no added contention; the load generators, the server and whatever else the machine runs share its CPUs."
	}
	return fmt.Sprintf("Mode: under contention. %s (each `sh -c '%s'`, which would keep a CPU busy on its own), "+
		"started before the first run and stopped after the last, compete with every run of both servers; "+
		"contention CPU s is the CPU time they got during a run. They are turnbench's children, so they are not "+
		"in other CPU, and the rerun rule applies as without contention.", busyProcesses(contention), busyLoop)
}

// rerunRule states the rule of runRound.
func rerunRule(opts options) string {
	if opts.tries == 1 {
		return fmt.Sprintf("A run whose other CPU exceeds %s of its wall time is marked noisy (quiet: NO); no round is run again (-tries 1).",
			percent(opts.maxOther))
	}
	return fmt.Sprintf("When a run's other CPU exceeds %s of its wall time, its whole round (both servers, in the "+
		"same order) is run again, %d tries at most, and the try whose noisier run was the quietest is kept: the two "+
		"runs of a ratio always ran back to back. A try with a failed run is kept and ends the round, so that no "+
		"other try hides a failure. tries is how many times the kept run's round ran; a run that never got "+
		"under the limit is kept and marked noisy (quiet: NO).", percent(opts.maxOther), opts.tries)
}

// rerunSummary counts the rounds run again and the noisy runs kept.
func rerunSummary(opts options, results map[string][]result) string {
	var rounds, rerun, extra, noisy int
	for _, p := range opts.parts {
		noisy += countNoisy(results[p.name], opts.maxOther)
		for _, r := range results[p.name] {
			// Each round's tries are counted once, on its first server's run.
			if r.server == serverKinds[0].name {
				rounds++
				if r.tries > 1 {
					rerun++
					extra += r.tries - 1
				}
			}
		}
	}
	return fmt.Sprintf("Rounds run again: %d of %d (%d extra tries); noisy runs kept: %d.", rerun, rounds, extra, noisy)
}

func percent(share float64) string { return strconv.FormatFloat(100*share, 'g', 4, 64) + " %" }

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
func runsTable(opts options, p *part, results []result) *table {
	t := &table{title: p.title + ": runs", header: append(textColumns("server", "scenario"),
		append(numberColumns("round"), metricColumns(p)...)...)}
	t.header = append(t.header, numberColumns(windowColumns(opts)...)...)
	t.header = append(t.header, numberColumns("tries")...)
	t.header = append(t.header, textColumns("quiet")...)
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
		row = append(row, windowCells(opts, r)...)
		row = append(row, strconv.Itoa(r.tries), quietText(opts, r))
		if failed {
			row = append(row, failureText(r.err))
		}
		t.rows = append(t.rows, row)
	}
	return t
}

// windowColumns are the columns of windowCells.
func windowColumns(opts options) []string {
	if opts.contention > 0 {
		return []string{"other CPU s", "other %", "contention CPU s"}
	}
	return []string{"other CPU s", "other %"}
}

// windowCells describe what competed with a run: other processes, and the contention
// processes when there are.
func windowCells(opts options, r result) []string {
	if r.err != nil {
		return slices.Repeat([]string{"-"}, len(windowColumns(opts)))
	}
	cells := []string{formatValue(r.window.other, 2), formatValue(100*r.window.otherShare(), 1)}
	if opts.contention > 0 {
		cells = append(cells, formatValue(r.window.contention, 2))
	}
	return cells
}

func quietText(opts options, r result) string {
	switch {
	case r.err != nil:
		return "-"
	case r.noisy(opts.maxOther):
		return "NO"
	default:
		return "yes"
	}
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
// successful runs, and how many of them were noisy.
func mediansTable(opts options, p *part, results []result) *table {
	t := &table{title: p.title + ": medians", header: append(textColumns("scenario", "server"),
		append(numberColumns("runs ok"), metricColumns(p)...)...)}
	t.header = append(t.header, numberColumns("other CPU s")...)
	if opts.contention > 0 {
		t.header = append(t.header, numberColumns("contention CPU s")...)
	}
	t.header = append(t.header, numberColumns("noisy runs")...)
	for _, sc := range p.scenarios {
		for _, kind := range serverKinds {
			ok, all := okResults(results, sc.name, kind.name)
			row := []string{sc.name, kind.name, fmt.Sprintf("%d/%d", len(ok), all)}
			for i, m := range p.metrics {
				row = append(row, formatMedian(metricValues(ok, i), m.decimals))
			}
			row = append(row, formatMedian(windowValues(ok, func(u usage) float64 { return u.other }), 2))
			if opts.contention > 0 {
				row = append(row, formatMedian(windowValues(ok, func(u usage) float64 { return u.contention }), 2))
			}
			t.rows = append(t.rows, append(row, strconv.Itoa(countNoisy(ok, opts.maxOther))))
		}
	}
	return t
}

func countNoisy(results []result, maxOther float64) int {
	n := 0
	for _, r := range results {
		if r.noisy(maxOther) {
			n++
		}
	}
	return n
}

// windowValues is one figure of every result's window.
func windowValues(results []result, figure func(usage) float64) []float64 {
	values := make([]float64, len(results))
	for i, r := range results {
		values[i] = figure(r.window)
	}
	return values
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

// ratiosTable has one row per scenario of every part: the medians of the part's key metric,
// the median and range of the per-round ratio Ferry/coturn, and how many of its rounds
// had a noisy run.
func ratiosTable(opts options, results map[string][]result) *table {
	t := &table{title: "Ferry/coturn ratios", header: append(textColumns("scenario", "metric", "better"),
		numberColumns("coturn", "ferry", "ferry/coturn", "min-max", "rounds", "noisy rounds")...)}
	for _, p := range opts.parts {
		key := slices.IndexFunc(p.metrics, func(m metric) bool { return m.name == p.key })
		m := p.metrics[key]
		better := "lower"
		if p.higherIsBetter {
			better = "higher"
		}
		for _, sc := range p.scenarios {
			coturn, _ := okResults(results[p.name], sc.name, "coturn")
			ferry, _ := okResults(results[p.name], sc.name, "ferry")
			ratios, noisy := roundRatios(coturn, ferry, key, opts.maxOther)
			row := []string{sc.name, m.name, better,
				formatMedian(metricValues(coturn, key), m.decimals), formatMedian(metricValues(ferry, key), m.decimals),
				formatMedian(ratios, 2), "-", strconv.Itoa(len(ratios)), strconv.Itoa(noisy)}
			if len(ratios) > 0 {
				row[6] = formatValue(slices.Min(ratios), 2) + "-" + formatValue(slices.Max(ratios), 2)
			}
			t.rows = append(t.rows, row)
		}
	}
	return t
}

// roundRatios pairs the runs of the same round and returns ferry/coturn of metric key for
// each round where both succeeded, and how many of those rounds had a noisy run.
func roundRatios(coturn, ferry []result, key int, maxOther float64) (ratios []float64, noisy int) {
	for _, f := range ferry {
		for _, c := range coturn {
			if c.round == f.round && c.values[key] != 0 {
				ratios = append(ratios, f.values[key]/c.values[key])
				if c.noisy(maxOther) || f.noisy(maxOther) {
					noisy++
				}
			}
		}
	}
	return ratios, noisy
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
