package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"sluice.dev/sluice/specs"
)

// sizeFlag is a byte count written as 1048576, 1MiB, 512KiB or 1Mi; 0 means
// no limit.
type sizeFlag struct{ n int64 }

func (s *sizeFlag) String() string {
	if s.n <= 0 {
		return "0"
	}
	return strings.ReplaceAll(specs.FormatSize(s.n), " ", "")
}

func (s *sizeFlag) Set(v string) error {
	t := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}, {"bytes", 1}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("%q is not a size: use bytes, or KiB, MiB, GiB (0 for no limit)", v)
	}
	s.n = n * mult
	return nil
}

func (s *sizeFlag) Type() string { return "size" }

func (s *sizeFlag) register(cmd *cobra.Command) {
	cmd.Flags().Var(s, "max-spec-size", "refuse release spec files larger than this (KiB, MiB; 0: no limit); checked before reading")
}
