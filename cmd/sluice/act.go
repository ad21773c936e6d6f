package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/mail"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/utils/diff"
	"github.com/sergi/go-diff/diffmatchpatch"
	"github.com/spf13/cobra"

	"sluice.dev/sluice/forge"
	"sluice.dev/sluice/gitsync"
	"sluice.dev/sluice/record"
	"sluice.dev/sluice/specs"
)

// A person's actions on a release (approve, abort, retry, pause, resume,
// promote --skip-analysis) are edits of its spec, committed to the watched
// branch as that person: Git is the record of who did what, and Sluice
// reacts to the edit at its next sync like to any other.

// actFlags are the flags every action shares.
type actFlags struct {
	rf          recordFlags
	repo        string
	author      string
	dryRun      bool
	pullRequest bool
	forge       forgeFlags
}

// forgeFlags name the forge for --pull-request.
type forgeFlags struct {
	provider, url, repo, tokenFile string
}

func (f *actFlags) register(cmd *cobra.Command) {
	f.rf.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.repo, "repo", ".", "a clone of the release repository (its origin is what gets the commit) or a bare repository; --git-url wins")
	fl.StringVar(&f.author, "author", "", `who acts, "Name <email>" (default: GIT_AUTHOR_NAME and GIT_AUTHOR_EMAIL, else git config user.name and user.email)`)
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the commit instead of pushing it")
	fl.BoolVar(&f.pullRequest, "pull-request", false, "open a pull request with the change instead of pushing it to the watched branch (needs --forge)")
	fl.StringVar(&f.forge.provider, "forge", "", "the forge for --pull-request: gitea, github or gitlab")
	fl.StringVar(&f.forge.url, "forge-url", "", "the forge's address (GitHub: its API URL; empty: api.github.com)")
	fl.StringVar(&f.forge.repo, "forge-repo", "", "the repository on the forge, owner/name (default: from the Git URL)")
	fl.StringVar(&f.forge.tokenFile, "forge-token-file", "", "file holding the forge's API token")
}

// target is the release an action is about, as Git has it now.
type target struct {
	id     specs.ID
	file   string
	rel    *specs.Release
	status *record.Status // nil when Sluice has recorded nothing yet
	plan   []specs.Step   // nil without a candidate
}

// request is the edit an action makes.
type request struct {
	verb    string
	subject string
	edit    func([]byte) ([]byte, error)
}

// actionCommand builds one action command; decide turns the release as it
// stands (and who acts) into the edit, or says why the action makes no
// sense now.
func actionCommand(use, short, long, example string, extra func(*cobra.Command), decide func(t *target, who string) (*request, error)) *cobra.Command {
	var af actFlags
	cmd := &cobra.Command{
		Use: use, Short: short, Long: long, Example: example,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAction(cmd, &af, args[0], decide)
		},
	}
	af.register(cmd)
	if extra != nil {
		extra(cmd)
	}
	return cmd
}

func runAction(cmd *cobra.Command, af *actFlags, releaseArg string, decide func(*target, string) (*request, error)) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	who, err := identity(af.author, af.repo)
	if err != nil {
		return err
	}
	url, branch, fromClone, err := remoteOf(af, cmd.Flags().Changed("git-branch"))
	if err != nil {
		return err
	}
	cfg := af.rf.git.config()
	cfg.URL, cfg.Branch = url, branch
	cfg.Author = gitsync.Signature{Name: who.Name, Email: who.Address}
	repo, err := gitsync.Open(ctx, cfg, discardLogger())
	if err != nil {
		return err
	}
	defer repo.Close()
	if _, err := repo.Sync(ctx); err != nil {
		return err
	}
	head, _, err := repo.Head()
	if err != nil {
		return err
	}
	tree, err := repo.Tree(ctx, head)
	if err != nil {
		return err
	}
	dir, err := af.rf.dir()
	if err != nil {
		return err
	}
	t, err := findTarget(tree, dir, releaseArg)
	if err != nil {
		return err
	}
	req, err := decide(t, who.Name)
	if err != nil {
		return fmt.Errorf("%s %s: %w", firstWord(cmd.Use), t.id, err)
	}
	old, err := tree.ReadFile(t.file)
	if err != nil {
		return err
	}
	updated, err := req.edit(old)
	if err != nil {
		return fmt.Errorf("%s: %w", t.file, err)
	}
	if string(updated) == string(old) {
		_, err := fmt.Fprintf(out, "Nothing to do: %s already says so.\n", t.file)
		return err
	}
	msg := req.subject + "\n\n" + fmt.Sprintf("Requested with `sluice %s %s`.", req.verb, t.id)
	trailers := []gitsync.Trailer{{Key: record.TrailerRelease, Value: t.id.String()}, {Key: record.TrailerRequest, Value: req.verb}}
	switch {
	case af.dryRun:
		fmt.Fprintf(out, "Would commit to %s (%s) as %s:\n\n    %s\n\n", gitsync.RedactURL(url), branch, person(who), req.subject)
		return writeEditDiff(out, t.file, string(old), string(updated))
	case af.pullRequest:
		return proposeAction(cmd, af, repo, url, branch, t, req, msg, trailers, updated)
	}
	res, err := repo.Commit(ctx, gitsync.Change{Message: msg, Trailers: trailers,
		Edits: []gitsync.Edit{{Path: t.file, Apply: req.edit}}})
	if err != nil {
		if errors.Is(err, specs.ErrMoved) {
			return fmt.Errorf("%s: %w; look again with `sluice status %s`", t.id, err, t.id)
		}
		return err
	}
	if res.NoChange {
		_, err := fmt.Fprintf(out, "Nothing to do: %s already says so.\n", t.file)
		return err
	}
	fmt.Fprintf(out, "Pushed %s to %s as %s: %s\n", res.Hash.String()[:12], branch, person(who), req.subject)
	if res.Retries > 0 {
		fmt.Fprintf(out, "(rebased on %d newer commit(s) pushed meanwhile)\n", res.Retries)
	}
	if fromClone {
		fmt.Fprintln(out, "Your clone is behind its origin now: git pull.")
	}
	return nil
}

// proposeAction pushes the edited spec to a branch of its own and opens a
// pull request into the watched branch: merging it is the action.
func proposeAction(cmd *cobra.Command, af *actFlags, repo *gitsync.Repo, url, base string, t *target, req *request, msg string, trailers []gitsync.Trailer, updated []byte) error {
	ctx := cmd.Context()
	if af.forge.provider == "" {
		return errors.New("--pull-request needs --forge (gitea, github or gitlab)")
	}
	fr := af.forge.repo
	if fr == "" {
		var err error
		if fr, err = forge.RepoFromGitURL(url); err != nil {
			return err
		}
	}
	fp, err := forge.New(forge.Config{Provider: af.forge.provider, URL: af.forge.url, Repo: fr, TokenFile: af.forge.tokenFile})
	if err != nil {
		return err
	}
	branch := fmt.Sprintf("sluice/request/%s/%s/%s-%d", t.id.Namespace, t.id.Name, req.verb, time.Now().Unix())
	if _, err := repo.Propose(ctx, branch, gitsync.Change{Message: msg, Trailers: trailers, Files: map[string][]byte{t.file: updated}}); err != nil {
		return err
	}
	pr, _, err := fp.EnsurePullRequest(ctx, forge.NewPullRequest{Head: branch, Base: base, Title: req.subject,
		Body: fmt.Sprintf("%s\n\nMerging this pull request is the action: Sluice reacts to it at its next sync.", msg)})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "Opened pull request #%d %s: %s\n", pr.Number, pr.URL, req.subject)
	return err
}

// identity is who acts: --author, else Git's environment, else the Git
// configuration of the clone and the user.
func identity(author, dir string) (*mail.Address, error) {
	if author != "" {
		a, err := mail.ParseAddress(author)
		if err != nil {
			return nil, fmt.Errorf("--author %q: want \"Name <email>\": %w", author, err)
		}
		if a.Name == "" {
			a.Name = a.Address
		}
		return a, nil
	}
	name, email := os.Getenv("GIT_AUTHOR_NAME"), os.Getenv("GIT_AUTHOR_EMAIL")
	if name == "" || email == "" {
		var cfg *gitconfig.Config
		if r, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true}); err == nil {
			cfg, _ = r.ConfigScoped(gitconfig.GlobalScope)
		}
		if cfg == nil {
			cfg, _ = gitconfig.LoadConfig(gitconfig.GlobalScope)
		}
		if cfg != nil {
			name, email = cmp.Or(name, cfg.User.Name, cfg.Author.Name), cmp.Or(email, cfg.User.Email, cfg.Author.Email)
		}
	}
	if name == "" || email == "" {
		return nil, errors.New("who is acting? Every action is a commit with your identity: pass --author \"Name <email>\" or set git config user.name and user.email")
	}
	return &mail.Address{Name: name, Address: email}, nil
}

func person(a *mail.Address) string { return a.Name + " <" + a.Address + ">" }

// remoteOf is the repository and branch an action commits to: --git-url
// (and --git-branch), else the clone in --repo: its origin and its current
// branch (a bare repository there is used as is). Committing to a
// working clone's own branch would leave its files behind its history, so
// the commit goes to its origin and the person pulls.
func remoteOf(af *actFlags, branchSet bool) (url, branch string, fromClone bool, err error) {
	branch = af.rf.git.branch
	if af.rf.git.url != "" {
		return af.rf.git.url, branch, false, nil
	}
	if strings.Contains(af.repo, "://") {
		return af.repo, branch, false, nil
	}
	dir, err := filepath.Abs(af.repo)
	if err != nil {
		return "", "", false, err
	}
	r, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return "", "", false, fmt.Errorf("%s is not a Git repository (use --git-url for a remote): %w", dir, err)
	}
	if _, err := r.Worktree(); errors.Is(err, git.ErrIsBareRepository) {
		return "file://" + dir, branch, false, nil
	}
	origin, err := r.Remote("origin")
	if err != nil || len(origin.Config().URLs) == 0 {
		return "", "", false, fmt.Errorf("the clone in %s has no origin to push to; use --git-url", dir)
	}
	url = origin.Config().URLs[0]
	if !strings.Contains(url, "://") && !strings.Contains(url, "@") {
		if !filepath.IsAbs(url) {
			url = filepath.Join(dir, url)
		}
		url = "file://" + url
	}
	if !branchSet {
		if h, err := r.Head(); err == nil && h.Name().IsBranch() {
			branch = h.Name().Short()
		}
	}
	return url, branch, true, nil
}

// findTarget finds the release named by arg (namespace/name, or a name
// that only one namespace has): its spec file, spec, record and plan.
func findTarget(tree *gitsync.Tree, statusDir, arg string) (*target, error) {
	ns, name, qualified := strings.Cut(arg, "/")
	if !qualified {
		ns, name = "", arg
	}
	type found struct {
		id   specs.ID
		file string
	}
	var hits []found
	// The status file names the spec file Sluice follows; without one, the
	// repository's YAML files are searched.
	if qualified {
		if st, err := record.Read(tree, statusDir, ns, name); err == nil && st != nil && st.SpecFile != "" {
			hits = append(hits, found{specs.ID{Namespace: ns, Name: name}, st.SpecFile})
		}
	}
	if len(hits) == 0 {
		err := fs.WalkDir(tree, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if p == statusDir || (p != "." && strings.HasPrefix(path.Base(p), ".")) {
					return fs.SkipDir
				}
				return nil
			}
			if ext := path.Ext(p); ext != ".yaml" && ext != ".yml" {
				return nil
			}
			data, err := tree.ReadFile(p)
			if err != nil || !specs.IsRelease(data) {
				return nil //nolint:nilerr // an unreadable file is not the release
			}
			for _, id := range specs.Identify(data) {
				if id.Name == name && (ns == "" || id.Namespace == ns) {
					hits = append(hits, found{id, p})
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	switch {
	case len(hits) == 0:
		return nil, fmt.Errorf("no release %s in the repository", arg)
	case len(hits) > 1 && !qualified:
		var ids []string
		for _, h := range hits {
			ids = append(ids, h.id.String())
		}
		return nil, fmt.Errorf("release %s is ambiguous: %s; name it namespace/name", arg, strings.Join(ids, ", "))
	}
	h := hits[0]
	data, err := tree.ReadFile(h.file)
	if err != nil {
		return nil, err
	}
	rels, err := specs.Parse(h.file, data)
	if err != nil {
		return nil, fmt.Errorf("the release spec does not parse; fix it first:\n%w", err)
	}
	t := &target{id: h.id, file: h.file}
	for _, r := range rels {
		if r.Metadata.Namespace == h.id.Namespace && r.Metadata.Name == h.id.Name {
			t.rel = r
		}
	}
	if t.rel == nil {
		return nil, fmt.Errorf("no release %s in %s", h.id, h.file)
	}
	if t.status, err = record.Read(tree, statusDir, h.id.Namespace, h.id.Name); err != nil {
		return nil, err
	}
	if t.rel.Spec.Candidate != "" {
		if t.plan, err = specs.Plan(t.rel); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// writeEditDiff prints the lines the edit changes, with a line of context.
func writeEditDiff(w io.Writer, file, old, updated string) error {
	fmt.Fprintf(w, "--- a/%s\n+++ b/%s\n", file, file)
	diffs := diff.Do(old, updated)
	for i, d := range diffs {
		lines := strings.SplitAfter(d.Text, "\n")
		if lines[len(lines)-1] == "" {
			lines = lines[:len(lines)-1]
		}
		switch d.Type {
		case diffmatchpatch.DiffDelete:
			for _, l := range lines {
				fmt.Fprint(w, "-"+l)
			}
		case diffmatchpatch.DiffInsert:
			for _, l := range lines {
				fmt.Fprint(w, "+"+l)
			}
		case diffmatchpatch.DiffEqual:
			if i > 0 {
				fmt.Fprint(w, " "+lines[0])
			}
			if i < len(diffs)-1 && len(lines) > 1 {
				fmt.Fprint(w, " "+lines[len(lines)-1])
			}
		}
	}
	return nil
}

func firstWord(s string) string {
	w, _, _ := strings.Cut(s, " ")
	return w
}
