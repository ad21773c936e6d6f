package gitserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// GenerateRepo creates root/name.git, a bare repository whose main branch
// has commits commits over files files (spread over directories of 50),
// using `git fast-import`, which writes thousands of commits per second.
// The first commit adds every file; each later one changes one file.
func GenerateRepo(t testing.TB, root, name string, commits, files int) string {
	t.Helper()
	RequireGit(t)
	if commits < 1 || files < 1 {
		t.Fatalf("GenerateRepo: want at least one commit and one file, got %d and %d", commits, files)
	}
	bare := filepath.Join(root, name+".git")
	MustGit(t, root, "init", "-q", "--bare", "-b", "main", bare)
	MustGit(t, bare, "config", "http.receivepack", "true")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	err := FastImport(ctx, bare, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
		for c := 0; c < commits; c++ {
			msg := fmt.Sprintf("generated commit %d", c)
			fmt.Fprintf(bw, "commit refs/heads/main\ncommitter Gen <gen@example.com> %d +0000\ndata %d\n%s\n", start+int64(c), len(msg), msg)
			if c == 0 {
				for f := 0; f < files; f++ {
					writeInline(bw, f, 0)
				}
			} else {
				writeInline(bw, c%files, c)
			}
			bw.WriteString("\n")
		}
		return bw.Flush()
	})
	if err != nil {
		t.Fatal(err)
	}
	// Pack it the way a served repository is packed.
	MustGit(t, bare, "repack", "-a", "-d", "-q")
	return bare
}

// GeneratedPath names file f of a generated repository.
func GeneratedPath(f int) string {
	return fmt.Sprintf("apps/app-%03d/file-%02d.yaml", f/50, f%50)
}

func writeInline(w *bufio.Writer, f, rev int) {
	content := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: file-%d\ndata:\n  revision: \"%d\"\n  padding: %s\n", f, rev, strings.Repeat("x", 64))
	fmt.Fprintf(w, "M 100644 inline %s\ndata %d\n%s\n", GeneratedPath(f), len(content), content)
}

// AddCommit appends one commit changing one file to branch main of bare,
// through fast-import, and returns nothing but errors: it is for
// benchmarks, which must not call t.Fatal from setup they time.
func AddCommit(ctx context.Context, bare string, n int) error {
	return FastImport(ctx, bare, func(w io.Writer) error {
		bw := bufio.NewWriter(w)
		msg := fmt.Sprintf("new commit %d", n)
		fmt.Fprintf(bw, "commit refs/heads/main\ncommitter Gen <gen@example.com> %d +0000\ndata %d\n%s\nfrom refs/heads/main^0\n",
			time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix()+int64(n), len(msg), msg)
		writeInline(bw, n%7, 1_000_000+n)
		bw.WriteString("\n")
		return bw.Flush()
	})
}

// FastImport runs `git fast-import` in bare and feeds it the stream.
func FastImport(ctx context.Context, bare string, stream func(io.Writer) error) error {
	cmd := exec.CommandContext(ctx, "git", "fast-import", "--quiet", "--done")
	cmd.Dir = bare
	cmd.Env = gitEnv(bare)
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start git fast-import: %w", err)
	}
	werr := stream(in)
	if werr == nil {
		_, werr = io.WriteString(in, "done\n")
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git fast-import: %w: %s", err, stderr.String())
	}
	if werr != nil {
		return fmt.Errorf("write fast-import stream: %w", werr)
	}
	return nil
}
