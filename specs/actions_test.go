package specs

import (
	"strings"
	"testing"
)

const actionSpec = `# The shop's release.
apiVersion: sluice.dev/v1alpha1
kind: Release
metadata:
  name: shop
  namespace: web
spec:
  service: {name: shop, port: 80}
  versions:
    - {name: v1, source: apps/shop/v1}
    - {name: v2, source: apps/shop/v2}
  stable: v1      # serving now
  candidate: v2   # being released
  stages:
    - name: deploy
      deploy: {}
`

// TestActionEdits: each person's action changes only its own lines.
func TestActionEdits(t *testing.T) {
	tests := []struct {
		name string
		in   string
		edit func([]byte) ([]byte, error)
		// add and drop are the lines the edit adds (after the candidate
		// line) and removes; want, when set, is the whole result.
		add  []string
		drop []string
		want string
		err  string
	}{
		{name: "pause adds a field after the candidate", in: actionSpec,
			edit: SetFieldEdit("web", "shop", "v2", "paused", true), add: []string{"  paused: true"}},
		{name: "abort names the candidate", in: actionSpec,
			edit: SetFieldEdit("web", "shop", "v2", "abort", "v2"), add: []string{"  abort: v2"}},
		{name: "retry's timestamp is quoted, so it stays a string", in: actionSpec,
			edit: SetFieldEdit("web", "shop", "", "retry", "2026-11-26T02:30:00Z"), add: []string{`  retry: "2026-11-26T02:30:00Z"`}},
		{name: "a field that exists is replaced in place, its comment kept",
			in:   strings.Replace(actionSpec, "  candidate: v2   # being released\n", "  candidate: v2   # being released\n  retry: \"1\" # first\n", 1),
			edit: SetFieldEdit("web", "shop", "", "retry", "2"),
			want: strings.Replace(actionSpec, "  candidate: v2   # being released\n", "  candidate: v2   # being released\n  retry: \"2\" # first\n", 1)},
		{name: "resume removes the field",
			in:   strings.Replace(actionSpec, "  stages:\n", "  paused: true\n  stages:\n", 1),
			edit: RemoveFieldEdit("web", "shop", "v2", "paused"), want: actionSpec},
		{name: "removing a missing field changes nothing", in: actionSpec,
			edit: RemoveFieldEdit("web", "shop", "v2", "paused", "abort"), want: actionSpec},
		{name: "approve starts spec.approvals", in: actionSpec,
			edit: ApproveEdit("web", "shop", Approval{Stage: "canary", Candidate: "v2", By: "Jane Doe"}),
			add:  []string{"  approvals:", `    - {stage: canary, candidate: v2, by: Jane Doe}`}},
		{name: "approve appends to a block list",
			in:   strings.Replace(actionSpec, "  stages:\n", "  approvals:\n  - stage: dark\n    candidate: v2\n  stages:\n", 1),
			edit: ApproveEdit("web", "shop", Approval{Stage: "canary", Candidate: "v2"}),
			want: strings.Replace(actionSpec, "  stages:\n", "  approvals:\n  - stage: dark\n    candidate: v2\n  - {stage: canary, candidate: v2}\n  stages:\n", 1)},
		{name: "approve appends to a flow list",
			in:   strings.Replace(actionSpec, "  stages:\n", "  approvals: []\n  stages:\n", 1),
			edit: ApproveEdit("web", "shop", Approval{Stage: "canary", Candidate: "v2"}),
			want: strings.Replace(actionSpec, "  stages:\n", "  approvals: [{stage: canary, candidate: v2}]\n  stages:\n", 1)},
		{name: "approve fills an empty approvals",
			in:   strings.Replace(actionSpec, "  stages:\n", "  approvals:\n  stages:\n", 1),
			edit: ApproveEdit("web", "shop", Approval{Stage: "canary", Candidate: "v2"}),
			want: strings.Replace(actionSpec, "  stages:\n", "  approvals:\n    - {stage: canary, candidate: v2}\n  stages:\n", 1)},
		{name: "approving twice changes nothing",
			in:   strings.Replace(actionSpec, "  stages:\n", "  approvals: [{stage: canary, candidate: v2}]\n  stages:\n", 1),
			edit: ApproveEdit("web", "shop", Approval{Stage: "canary", Candidate: "v2", By: "Jane"}),
			want: strings.Replace(actionSpec, "  stages:\n", "  approvals: [{stage: canary, candidate: v2}]\n  stages:\n", 1)},
		{name: "a name that needs quoting is quoted", in: actionSpec,
			edit: ApproveEdit("web", "shop", Approval{Stage: "canary", Candidate: "v2", By: "O'Brien: ops #1"}),
			add:  []string{"  approvals:", `    - {stage: canary, candidate: v2, by: 'O''Brien: ops #1'}`}},
		{name: "the candidate moved on: refused", in: actionSpec,
			edit: SetFieldEdit("web", "shop", "v3", "abort", "v3"), err: "the release moved on: its candidate is v2, not v3"},
		{name: "another release of the file is left alone",
			in:   actionSpec + "---\n" + strings.Replace(actionSpec, "name: shop", "name: cart", 1),
			edit: SetFieldEdit("web", "cart", "v2", "paused", true),
			want: actionSpec + "---\n" + strings.Replace(strings.Replace(actionSpec, "name: shop", "name: cart", 1), "  candidate: v2   # being released\n", "  candidate: v2   # being released\n  paused: true\n", 1)},
		{name: "a flow spec is refused", in: "apiVersion: sluice.dev/v1alpha1\nkind: Release\nmetadata: {name: shop, namespace: web}\nspec: {stable: v1, candidate: v2}\n",
			edit: SetFieldEdit("web", "shop", "v2", "paused", true), err: "flow mapping"},
		{name: "no such release", in: actionSpec,
			edit: SetFieldEdit("web", "nope", "", "paused", true), err: "no Release web/nope in the file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.edit([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if want == "" {
				want = strings.Replace(tc.in, "  candidate: v2   # being released\n", "  candidate: v2   # being released\n"+strings.Join(tc.add, "\n")+"\n", 1)
			}
			if string(got) != want {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}
