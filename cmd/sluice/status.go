package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	"sigs.k8s.io/yaml"

	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
)

// statusView is one release as `sluice status -o json|yaml` prints it: the
// fields of its status file, as Sluice recorded them, and what they mean.
// Field names are stable; README.md lists them.
type statusView struct {
	*record.Status
	// Reason says why the release is where it is (record.Status.Reason).
	Reason string `json:"reason,omitempty"`
	// Traffic is what the recorded step gives the candidate, read from the
	// release's plan: a dark launch's match and no weighted share, where
	// the status file's weight says 100 (of the matching requests).
	Traffic specs.Traffic `json:"traffic"`
	// TrafficText is Traffic as the WEIGHT column shows it.
	TrafficText string `json:"trafficText"`
	// SpecError says why the release's spec could not be read at this
	// commit; the plan and traffic then come from the status file alone.
	SpecError string `json:"specError,omitempty"`

	plan []specs.Step
}

// releaseDetail is `sluice status RELEASE`: the release's view, its plan
// against the record, and its last transitions.
type releaseDetail struct {
	statusView
	// Threshold is how many failed checks roll the release back.
	Threshold int `json:"threshold,omitempty"`
	// Plan is the release's steps, each with its state: done, current,
	// failed (where it rolled back) or todo.
	Plan []planStep `json:"plan"`
	// Transitions are the release's last recorded transitions, newest
	// first.
	Transitions []record.Transition `json:"transitions"`
}

// planStep is one step of a release's plan against its record.
type planStep struct {
	Index   int            `json:"index"`
	Name    string         `json:"name"`
	Stage   string         `json:"stage"`
	Kind    specs.StepKind `json:"kind"`
	Traffic specs.Traffic  `json:"traffic"`
	Gates   string         `json:"gates"`
	// Approval is the approval this step waits for before it starts (the
	// first step of a stage that needs one); empty for the others.
	Approval string `json:"approval,omitempty"`
	State    string `json:"state"`
}

// statusSnapshot is what the record says at one commit.
type statusSnapshot struct {
	head     plumbing.Hash
	releases []*statusView
}

// readStatus reads every status file, and each release's spec, at head.
func readStatus(ctx context.Context, repo *gitsync.Repo, statusDir string) (*statusSnapshot, error) {
	head, _, err := repo.Head()
	if err != nil {
		return nil, err
	}
	tree, err := repo.Tree(ctx, head)
	if err != nil {
		return nil, err
	}
	list, err := record.ReadAll(tree, statusDir)
	if err != nil {
		return nil, err
	}
	snap := &statusSnapshot{head: head, releases: make([]*statusView, 0, len(list))}
	for _, st := range list {
		snap.releases = append(snap.releases, newStatusView(tree, st))
	}
	return snap, nil
}

// newStatusView reads the release's spec from fsys, at the path its
// status names, to plan it and say what its step gives the candidate.
func newStatusView(fsys fs.FS, st *record.Status) *statusView {
	v := &statusView{Status: st, Reason: st.Reason()}
	rel, err := specOf(fsys, st)
	if err != nil {
		v.SpecError = err.Error()
	} else if v.plan, err = specs.Plan(rel); err != nil {
		v.SpecError = err.Error()
	}
	v.Traffic = record.StepTraffic(st, v.plan)
	v.TrafficText = v.Traffic.String()
	return v
}

func specOf(fsys fs.FS, st *record.Status) (*specs.Release, error) {
	if st.SpecFile == "" {
		return nil, errors.New("the status file names no spec file")
	}
	rels, err := specs.LoadFS(fsys, st.SpecFile)
	if err != nil {
		return nil, err
	}
	for _, r := range rels {
		if r.ID() == st.Release {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%s holds no release %s", st.SpecFile, st.Release)
}

func (v *statusView) detail(ctx context.Context, repo record.Logger, transitions int) (*releaseDetail, error) {
	d := &releaseDetail{statusView: *v, Plan: []planStep{}}
	for i, s := range v.plan {
		d.Plan = append(d.Plan, planStep{Index: s.Index, Name: s.Name, Stage: s.Stage, Kind: s.Kind, Traffic: s.Traffic(),
			Gates: describeGates(s.Gates), Approval: approvalText(s), State: v.stepState(i)})
		if i == v.StepIndex {
			d.Threshold = s.Gates.Threshold
		}
	}
	ts, err := record.History(ctx, repo, v.Release, transitions)
	if err != nil {
		return nil, err
	}
	if ts == nil {
		ts = []record.Transition{}
	}
	d.Transitions = ts
	return d, nil
}

// approvalText is what the APPROVAL column says of a step: the approval it
// waits for, only on its stage's first step (the stage's other steps follow
// once it is approved); empty for the others.
func approvalText(s specs.Step) string {
	if !s.AwaitsApproval {
		return ""
	}
	return s.Approval
}

// stepState is where step i stands against the record.
func (v *statusView) stepState(i int) string {
	switch {
	case v.Phase == record.PhasePromoted:
		return "done"
	case v.Phase == record.PhaseRolledBack && i == v.StepIndex:
		return "failed"
	case v.Candidate == "" || v.Phase == record.PhaseSteady:
		return "todo"
	case i < v.StepIndex:
		return "done"
	case i == v.StepIndex && v.Phase != record.PhaseRolledBack:
		return "current"
	}
	return "todo"
}

// statusArgs tells RELEASE from REPO: with one argument, a URL or an
// existing directory is REPO, anything else RELEASE.
func statusArgs(args []string) (release, repo string) {
	switch len(args) {
	case 0:
		return "", ""
	case 1:
		a := args[0]
		if strings.Contains(a, "://") || strings.Contains(a, "@") {
			return "", a
		}
		if st, err := os.Stat(a); err == nil && st.IsDir() {
			return "", a
		}
		return a, ""
	}
	return args[0], args[1]
}

// find is the release named namespace/name, or name when it is unique.
func (s *statusSnapshot) find(name string) (*statusView, error) {
	var found []*statusView
	for _, v := range s.releases {
		if v.Release == name {
			return v, nil
		}
		if _, n, _ := strings.Cut(v.Release, "/"); n == name {
			found = append(found, v)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no release %q is recorded", name)
	case 1:
		return found[0], nil
	}
	ids := make([]string, len(found))
	for i, v := range found {
		ids[i] = v.Release
	}
	return nil, fmt.Errorf("%d releases are named %q (%s): name one as namespace/name", len(found), name, strings.Join(ids, ", "))
}

type statusOptions struct {
	rf          recordFlags
	output      string
	watch       bool
	interval    time.Duration
	transitions int
	// statusDir is --status-dir, or the --cluster's directory in it.
	statusDir string

	// detailed is the release's detail at commit detailedAt.
	detailed   *releaseDetail
	detailedAt plumbing.Hash
}

func newStatusCommand() *cobra.Command {
	var o statusOptions
	cmd := &cobra.Command{
		Use:   "status [RELEASE] [REPO]",
		Short: "Show where every release stands, and why, from the record in Git",
		Long: `Status reads Sluice's status files from a repository (a local clone's
directory, a URL, or --git-url) and prints every release with its phase,
step, what the candidate gets (WEIGHT: a share of all requests, or a dark
launch's match), its last gate values, since when, and why (REASON: what it
waits for and how to end the wait, why it rolled back, is invalid or
blocked, checks held without data, versions draining). It needs no access to
the cluster.

With RELEASE (namespace/name, or a name when unique) it shows that release
in detail: the plan with the current step marked, the gates' last values
against their thresholds, and the last transitions. With one argument, a
URL or an existing directory is REPO, anything else RELEASE.

-o json and -o yaml carry all of it, under the field names README.md lists.
--watch fetches the branch every --interval and prints the status again at
each new commit, like kubectl get -w; on a terminal it redraws in place.
Ctrl-C ends it.`,
		Example: `  sluice status .
  sluice status istioinaction/catalog .
  sluice status --watch
  sluice status https://git.example.com/platform/releases.git -o json`,
		Args: cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch o.output {
			case "", "table", "json", "yaml":
			default:
				return fmt.Errorf("unknown output format %q (use table, json or yaml)", o.output)
			}
			if o.watch && o.interval <= 0 {
				return fmt.Errorf("--interval must be positive, got %s", o.interval)
			}
			dir, err := o.rf.dir()
			if err != nil {
				return err
			}
			o.statusDir = dir
			release, repoArg := statusArgs(args)
			repo, err := o.rf.open(cmd, repoArg)
			if err != nil {
				return err
			}
			draw := func(ctx context.Context, w io.Writer, snap *statusSnapshot, now time.Time) error {
				return o.print(ctx, w, repo, snap, release, now)
			}
			if !o.watch {
				snap, err := readStatus(cmd.Context(), repo, o.statusDir)
				if err != nil {
					return err
				}
				return draw(cmd.Context(), cmd.OutOrStdout(), snap, time.Now())
			}
			return o.watchStatus(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), repo, draw)
		},
	}
	o.rf.register(cmd)
	f := cmd.Flags()
	f.StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
	f.BoolVarP(&o.watch, "watch", "w", false, "print the status again at each new commit of the branch (redrawn in place on a terminal)")
	f.DurationVar(&o.interval, "interval", 2*time.Second, "with --watch, how often to fetch the branch")
	f.IntVar(&o.transitions, "transitions", 10, "with RELEASE, how many of its last transitions to show (0: all)")
	return cmd
}

// print writes the snapshot (or one release of it) in the chosen format.
func (o *statusOptions) print(ctx context.Context, w io.Writer, repo *gitsync.Repo, snap *statusSnapshot, release string, now time.Time) error {
	if release == "" {
		switch o.output {
		case "json":
			return writeJSON(w, snap.releases)
		case "yaml":
			return writeYAML(w, snap.releases)
		}
		return statusTable(w, snap.releases, now)
	}
	d := o.detailed
	if d == nil || o.detailedAt != snap.head {
		// Once per commit: --watch redraws a terminal at every fetch, and
		// the transitions come from walking the log.
		v, err := snap.find(release)
		if err != nil {
			return err
		}
		if d, err = v.detail(ctx, repo, o.transitions); err != nil {
			return err
		}
		o.detailed, o.detailedAt = d, snap.head
	}
	switch o.output {
	case "json":
		return writeJSON(w, d)
	case "yaml":
		return writeYAML(w, d)
	}
	return detailText(w, d, now)
}

func writeYAML(w io.Writer, v any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// watchStatus prints the status, then fetches the branch every interval
// and prints it again when the head moved. On a terminal it redraws the
// screen in place, at every fetch, so that ages stay current; otherwise it
// appends each new status under a line naming the commit, as kubectl get
// -w appends rows. A failed fetch is reported and retried; Ctrl-C ends it.
func (o *statusOptions) watchStatus(ctx context.Context, out, errOut io.Writer, repo *gitsync.Repo,
	draw func(context.Context, io.Writer, *statusSnapshot, time.Time) error) error {
	tty := isTerminal(out)
	var (
		snap    *statusSnapshot
		problem string
		first   = true
		// machine output is a stream of documents, never redrawn.
		machine = o.output == "json" || o.output == "yaml"
	)
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for {
		head, _, err := repo.Head()
		if err != nil {
			return err
		}
		changed := snap == nil || head != snap.head
		if changed {
			next, err := readStatus(ctx, repo, o.statusDir)
			if err != nil {
				return err
			}
			snap = next
		}
		if changed || tty && !machine {
			var b strings.Builder
			now := time.Now()
			switch o.output {
			case "json":
				// A stream of JSON documents, one per commit.
			case "yaml":
				b.WriteString("---\n")
			default:
				fmt.Fprintf(&b, "%s at %s, %s (every %s; Ctrl-C ends)\n", repo.URL(), repo.Branch(), snap.head.String()[:12], o.interval)
				if problem != "" {
					fmt.Fprintf(&b, "! %s\n", problem)
				}
				b.WriteString("\n")
			}
			if err := draw(ctx, &b, snap, now); err != nil {
				if machine {
					return err
				}
				fmt.Fprintf(&b, "Error: %v\n", err)
			}
			frame := b.String()
			if !first && !machine && !tty {
				frame = "\n" + frame // one status after the other
			}
			if err := writeFrame(out, frame, tty && !machine); err != nil {
				return err
			}
			first = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		problem = ""
		if _, err := repo.Sync(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			problem = "fetch failed: " + err.Error()
			if !tty || machine {
				fmt.Fprintf(errOut, "sluice status: %s\n", problem)
			}
		}
	}
}

// writeFrame prints one frame: on a terminal it moves to the top left,
// rewrites every line (clearing what is left of the old one) and clears
// below, so the screen never flashes blank; elsewhere it appends it.
func writeFrame(w io.Writer, frame string, tty bool) error {
	if !tty {
		_, err := io.WriteString(w, frame)
		return err
	}
	var b strings.Builder
	b.WriteString("\x1b[H")
	for line := range strings.Lines(frame) {
		b.WriteString(strings.TrimSuffix(line, "\n"))
		b.WriteString("\x1b[K\r\n")
	}
	b.WriteString("\x1b[J")
	_, err := io.WriteString(w, b.String())
	return err
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func statusTable(w io.Writer, list []*statusView, now time.Time) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "No releases recorded yet.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RELEASE\tPHASE\tVERSIONS\tSTEP\tWEIGHT\tGATES\tSINCE\tREASON")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Release, s.Phase, versionsOf(s.Status), orNone(s.Step), s.TrafficText,
			orNone(record.Summary(s.Gates)), since(s.Since, now), orNone(s.Reason))
	}
	return tw.Flush()
}

func versionsOf(s *record.Status) string {
	versions := s.Stable
	if s.Candidate != "" && s.Phase != record.PhasePromoted {
		versions += " -> " + s.Candidate
	}
	return versions
}

// detailText is `sluice status RELEASE` as text.
func detailText(w io.Writer, d *releaseDetail, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Release", d.Release)
	row("Spec", orNone(d.SpecFile))
	row("Phase", fmt.Sprintf("%s since %s", d.Phase, since(d.Since, now)))
	row("Versions", versionsOf(d.Status))
	step := orNone(d.Step)
	if len(d.Plan) > 0 && d.Step != "" {
		step += fmt.Sprintf(" (step %d of 0..%d)", d.StepIndex, len(d.Plan)-1)
	}
	row("Step", step)
	row("Traffic", trafficDetail(d.Traffic))
	if d.Threshold > 0 {
		row("Failed checks", fmt.Sprintf("%d (rolls back at %d)", d.FailedChecks, d.Threshold))
	} else {
		row("Failed checks", strconv.Itoa(d.FailedChecks))
	}
	row("Reason", orNone(d.Reason))
	if d.SpecError != "" {
		row("Spec error", d.SpecError)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if len(d.Plan) > 0 {
		fmt.Fprintf(w, "\nPlan:\n")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  \t#\tSTEP\tKIND\tCANDIDATE TRAFFIC\tGATES\tAPPROVAL\tSTATE")
		for _, s := range d.Plan {
			mark := ""
			switch s.State {
			case "current":
				mark = ">"
			case "failed":
				mark = "x"
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", mark, s.Index, s.Name, s.Kind, s.Traffic, s.Gates, orNone(s.Approval), s.State)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintf(w, "\nGates at the last recorded check:\n")
	if len(d.Gates) == 0 {
		fmt.Fprintln(w, "  none recorded")
	} else {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  METRIC\tVALUE\tTHRESHOLD\tRESULT")
		for _, g := range d.Gates {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", g.Metric, gateValue(g), gateThreshold(g), gateResult(g))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintf(w, "\nLast transitions:\n")
	if len(d.Transitions) == 0 {
		_, err := fmt.Fprintln(w, "  none recorded")
		return err
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  WHEN\tCOMMIT\tACTION\tSTEP\tMESSAGE")
	for _, e := range d.Transitions {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", e.When.UTC().Format(time.RFC3339), e.Commit, e.Action, orNone(e.Step), e.Subject)
	}
	return tw.Flush()
}

// trafficDetail spells a step's traffic out.
func trafficDetail(t specs.Traffic) string {
	switch {
	case t.Match != "":
		return fmt.Sprintf("%d%% of the requests matching %s, none of the others (%d%% by weight)", t.MatchWeight, t.Match, t.Weight)
	case t.MirrorPercent > 0:
		return fmt.Sprintf("%g%% of all requests mirrored (their responses come from stable)", t.MirrorPercent)
	}
	return fmt.Sprintf("%s of all requests", t)
}

func gateValue(g record.GateValue) string {
	if g.Value == nil {
		return "no data"
	}
	return strconv.FormatFloat(*g.Value, 'g', 6, 64)
}

func gateThreshold(g record.GateValue) string {
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	switch {
	case g.Min != nil && g.Max != nil:
		return f(*g.Min) + " to " + f(*g.Max)
	case g.Min != nil:
		return ">= " + f(*g.Min)
	case g.Max != nil:
		return "<= " + f(*g.Max)
	}
	return "-"
}

func gateResult(g record.GateValue) string {
	switch {
	case g.Value == nil:
		return "no data"
	case g.Passed:
		return "pass"
	}
	return "fail"
}

func since(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), now.Sub(t).Round(time.Second))
}
