// Command thanos-rules-check checks Prometheus rule files the way `thanos tools rules-check` of
// Thanos does, without building the whole thanos binary (more than twice the build time, four
// times the size: too much for `make test` on a fresh machine; see tests/install-go-tools.sh).
//
// The checking is Thanos's own: every file goes through rules.ValidateAndCount of
// github.com/thanos-io/thanos/pkg/rules (the pinned module version of go.mod), which is all that
// `thanos tools rules-check` calls per file (cmd/thanos/tools.go, checkRulesFiles). This file
// only repeats that command's small driver: expand each --rules glob, validate each match, log
// to stderr with Thanos's default logger (logfmt, level info) and exit 1 if any pattern or file
// failed.
//
//	thanos-rules-check --rules 'alerts/rules/*.yml' [--rules GLOB]...
//	thanos-rules-check --version
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/pkg/errors"

	"github.com/thanos-io/thanos/pkg/errutil"
	"github.com/thanos-io/thanos/pkg/logging"
	"github.com/thanos-io/thanos/pkg/rules"
)

const thanosModule = "github.com/thanos-io/thanos"

type globs []string

func (g *globs) String() string     { return fmt.Sprint(*g) }
func (g *globs) Set(v string) error { *g = append(*g, v); return nil }

// thanosVersion is the version of the Thanos module this binary was built with, e.g. "0.42.5".
func thanosVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == thanosModule {
				if dep.Replace != nil {
					dep = dep.Replace
				}
				return dep.Version[1:]
			}
		}
	}
	return "unknown"
}

// checkRulesFiles is the driver of `thanos tools rules-check`, around Thanos's own check.
func checkRulesFiles(logger log.Logger, patterns []string) error {
	var failed errutil.MultiError
	for _, p := range patterns {
		level.Info(logger).Log("msg", "checking", "pattern", p)
		matches, err := filepath.Glob(p)
		if err != nil || matches == nil {
			err = errors.New("matching file not found")
			level.Error(logger).Log("result", "FAILED", "error", err)
			failed.Add(err)
			continue
		}
		for _, fn := range matches {
			level.Info(logger).Log("msg", "checking", "filename", filepath.Clean(fn))
			if err := checkFile(logger, fn); err != nil {
				failed.Add(err)
			}
		}
	}
	return failed.Err()
}

func checkFile(logger log.Logger, fn string) error {
	f, err := os.Open(fn)
	if err != nil {
		level.Error(logger).Log("result", "FAILED", "error", err)
		return err
	}
	defer func() { _ = f.Close() }()

	n, errs := rules.ValidateAndCount(f) // Thanos's check: all of it.
	if errs.Err() != nil {
		level.Error(logger).Log("result", "FAILED")
		for _, e := range errs {
			level.Error(logger).Log("error", e.Error())
		}
		return errs.Err()
	}
	level.Info(logger).Log("result", "SUCCESS", "rules found", n)
	return nil
}

func main() {
	var patterns globs
	flag.Var(&patterns, "rules", "The rule files glob to check (repeated).")
	showVersion := flag.Bool("version", false, "Print the Thanos version this checker was built with.")
	flag.Parse()

	if *showVersion {
		fmt.Printf("thanos-rules-check, version %s (%s, pkg/rules.ValidateAndCount)\n", thanosVersion(), thanosModule)
		return
	}
	if len(patterns) == 0 || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: thanos-rules-check --rules GLOB [--rules GLOB]...")
		os.Exit(2)
	}
	logger, err := logging.NewLogger("info", logging.LogFormatLogfmt, "") // thanos's defaults
	if err != nil {
		fmt.Fprintf(os.Stderr, "failed to create logger: %v\n", err)
		os.Exit(1)
	}
	if err := checkRulesFiles(logger, patterns); err != nil {
		level.Error(logger).Log("err", fmt.Sprintf("%v", errors.Wrap(err, "rules-check command failed")))
		os.Exit(1)
	}
}
