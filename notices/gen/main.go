// Command gen writes notices/THIRD_PARTY_NOTICES.txt: the license texts and
// notices of everything linked into the infergate binary, for every release
// target of scripts/release.sh. Run it with `go generate ./notices`.
//
// What is linked comes from the go command (`go list -deps` of
// ./cmd/infergate with each target's GOOS/GOARCH/GOARM), the same package
// graph the linker records in the binary's module list. For each linked
// package the license files (LICENSE*, LICENCE*, COPYING*, NOTICE*, PATENTS*)
// of its directory and of every directory above it up to its module's root
// are taken, so code a module vendors with its own license in a
// subdirectory is covered when, and only when, it is linked. The standard
// library gets Go's own LICENSE and PATENTS.
//
// Each license file is recognised as one or more of a short list of
// licenses (see classify); a file that is none of them stops the generator,
// so a new dependency under an unknown license cannot ship unnoticed.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
)

func main() {
	out := flag.String("o", "", "write to this file instead of standard output")
	targets := flag.String("targets", "", `space-separated GOOS/ARCH list (default: ALL_TARGETS of scripts/release.sh)`)
	flag.Parse()
	if err := run(*out, *targets); err != nil {
		fmt.Fprintln(os.Stderr, "notices/gen:", err)
		os.Exit(1)
	}
}

func run(out, targets string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if targets == "" {
		if targets, err = ReleaseTargets(filepath.Join(root, "scripts", "release.sh")); err != nil {
			return err
		}
	}
	mods, err := Linked(root, strings.Fields(targets))
	if err != nil {
		return err
	}
	text, err := Render(mods)
	if err != nil {
		return err
	}
	if out == "" {
		_, err = os.Stdout.Write(text)
		return err
	}
	return os.WriteFile(out, text, 0o644)
}

func moduleRoot() (string, error) {
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(b))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the infergate module")
	}
	return filepath.Dir(gomod), nil
}

// ReleaseTargets reads ALL_TARGETS="…" from scripts/release.sh, the one
// list of release targets.
func ReleaseTargets(script string) (string, error) {
	b, err := os.ReadFile(script)
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^ALL_TARGETS="([^"]+)"$`).FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("%s: no ALL_TARGETS=\"…\" line", script)
	}
	return string(m[1]), nil
}

// Module is one linked module (or the standard library, Path "std") with
// the license files found for its linked packages, relative to Dir.
type Module struct {
	Path, Version string
	Replace       string // "path version" of a replacement, if any
	Dir           string
	Files         []string
}

// Env returns the environment for one GOOS/ARCH target ("linux/armv7").
func Env(target string) ([]string, error) {
	goos, arch, ok := strings.Cut(target, "/")
	if !ok {
		return nil, fmt.Errorf("target %q: want GOOS/ARCH", target)
	}
	goarm := ""
	switch arch {
	case "armv6":
		arch, goarm = "arm", "6"
	case "armv7":
		arch, goarm = "arm", "7"
	}
	return append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+arch, "GOARM="+goarm), nil
}

type listedPackage struct {
	ImportPath string
	Dir        string
	Standard   bool
	Module     *struct {
		Path, Version, Dir string
		Main               bool
		Replace            *struct{ Path, Version, Dir string }
	}
}

// Linked returns the modules linked into ./cmd/infergate for any of the
// targets, sorted by path, the standard library first.
func Linked(root string, targets []string) ([]*Module, error) {
	byPath := map[string]*Module{}
	files := map[string]map[string]bool{}
	for _, target := range targets {
		env, err := Env(target)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Dir,Standard,Module", "./cmd/infergate")
		cmd.Dir, cmd.Env = root, env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go list for %s: %w\n%s", target, err, stderr.Bytes())
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		for {
			var p listedPackage
			if err := dec.Decode(&p); err == io.EOF {
				break
			} else if err != nil {
				return nil, fmt.Errorf("go list for %s: %w", target, err)
			}
			var m *Module
			switch {
			case p.Standard:
				if byPath["std"] == nil {
					goroot, err := exec.Command("go", "env", "GOROOT").Output()
					if err != nil {
						return nil, fmt.Errorf("go env GOROOT: %w", err)
					}
					m = &Module{Path: "std", Dir: strings.TrimSpace(string(goroot))}
					byPath["std"] = m
					// The standard library's tree (and the golang.org/x code
					// it vendors) is under Go's LICENSE and PATENTS.
					files["std"] = map[string]bool{}
					for _, f := range licenseFiles(m.Dir) {
						files["std"][f] = true
					}
				}
				continue
			case p.Module == nil:
				return nil, fmt.Errorf("%s (%s): package outside any module", p.ImportPath, target)
			case p.Module.Main:
				continue // infergate itself
			}
			mod := p.Module
			if m = byPath[mod.Path]; m == nil {
				m = &Module{Path: mod.Path, Version: mod.Version, Dir: mod.Dir}
				if r := mod.Replace; r != nil {
					m.Replace = strings.TrimSpace(r.Path + " " + r.Version)
					m.Dir = r.Dir
				}
				byPath[mod.Path] = m
				files[mod.Path] = map[string]bool{}
			}
			rel, err := filepath.Rel(m.Dir, p.Dir)
			if err != nil || strings.HasPrefix(rel, "..") {
				return nil, fmt.Errorf("%s: directory %s is outside its module %s", p.ImportPath, p.Dir, m.Dir)
			}
			// From the package's directory up to the module root.
			for d := rel; ; d = filepath.Dir(d) {
				for _, f := range licenseFiles(filepath.Join(m.Dir, d)) {
					files[m.Path][filepath.ToSlash(filepath.Join(d, f))] = true
				}
				if d == "." {
					break
				}
			}
		}
	}
	var mods []*Module
	for path, m := range byPath {
		for f := range files[path] {
			m.Files = append(m.Files, f)
		}
		sort.Strings(m.Files)
		mods = append(mods, m)
	}
	sort.Slice(mods, func(i, j int) bool {
		if (mods[i].Path == "std") != (mods[j].Path == "std") {
			return mods[i].Path == "std"
		}
		return mods[i].Path < mods[j].Path
	})
	return mods, nil
}

var licenseName = regexp.MustCompile(`(?i)^(licen[cs]e|copying|notice|patents)([._-].*)?$`)

func licenseFiles(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && licenseName.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names
}

// isLicense tells a license text (which must be recognised) from a
// notice or patent grant (copied as it is).
func isLicense(name string) bool {
	n := strings.ToLower(filepath.Base(name))
	return strings.HasPrefix(n, "licen") || strings.HasPrefix(n, "copying")
}

// The licenses infergate can ship under, each recognised by phrases of its
// text (after folding case, punctuation and white space). A file may hold
// several (yaml: MIT and Apache-2.0; klauspost/compress: BSD-3-Clause,
// Apache-2.0 and MIT). The list is short on purpose: a license outside it
// needs a person to read it before infergate ships it.
var known = []struct {
	id      string
	phrases []string
	unless  []string
}{
	{id: "Apache-2.0", phrases: []string{"apache license version 2 0", "grant of patent license"}},
	// The standard notice that points to the license instead of holding it
	// (yaml's LICENSE); the full text is in these notices with other modules'.
	{id: "Apache-2.0", phrases: []string{"licensed under the apache license version 2 0", "you may not use this file except in compliance with the license"}},
	{id: "MIT", phrases: []string{"permission is hereby granted free of charge to any person obtaining a copy", "the above copyright notice and this permission notice shall be included"}},
	{id: "BSD-3-Clause", phrases: []string{"redistribution and use in source and binary forms", "neither the name of"}},
	{id: "BSD-2-Clause", phrases: []string{"redistribution and use in source and binary forms", "redistributions in binary form must reproduce"}, unless: []string{"neither the name of", "the names of its contributors may not be used"}},
	{id: "ISC", phrases: []string{"permission to use copy modify and or distribute this software for any purpose with or without fee is hereby granted"}},
	{id: "MPL-2.0", phrases: []string{"mozilla public license version 2 0"}},
}

var nonWord = regexp.MustCompile(`[^a-z0-9]+`)

func fold(s string) string {
	return " " + strings.TrimSpace(nonWord.ReplaceAllString(strings.ToLower(s), " ")) + " "
}

// Classify names the licenses found in a license text, or nil.
func Classify(text string) []string {
	f := fold(text)
	has := func(p string) bool { return strings.Contains(f, " "+p+" ") }
	var ids []string
	for _, k := range known {
		ok := true
		for _, p := range k.phrases {
			ok = ok && has(p)
		}
		for _, p := range k.unless {
			ok = ok && !has(p)
		}
		if ok {
			ids = append(ids, k.id)
		}
	}
	return ids
}

// Render writes the notices: an index of every module with its licenses,
// then each distinct text once, headed by the modules and files it is for.
func Render(mods []*Module) ([]byte, error) {
	type text struct {
		body  string
		owner []string // "module version: file"
	}
	var texts []*text
	bySum := map[[32]byte]*text{}
	licenses := map[string][]string{}
	for _, m := range mods {
		var ids []string
		for _, f := range m.Files {
			b, err := os.ReadFile(filepath.Join(m.Dir, filepath.FromSlash(f)))
			if err != nil {
				return nil, err
			}
			if isLicense(f) {
				found := Classify(string(b))
				if found == nil {
					return nil, fmt.Errorf("%s %s: %s is not a license this generator knows (see known in notices/gen); read it, then add it", m.Path, m.Version, f)
				}
				ids = append(ids, found...)
			}
			body := strings.TrimRight(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n \t") + "\n"
			sum := sha256.Sum256([]byte(body))
			t := bySum[sum]
			if t == nil {
				t = &text{body: body}
				bySum[sum] = t
				texts = append(texts, t)
			}
			t.owner = append(t.owner, m.title()+": "+f)
		}
		if ids == nil {
			return nil, fmt.Errorf("%s %s: no LICENSE or COPYING file in the module or the directories of its linked packages", m.Path, m.Version)
		}
		slices.Sort(ids)
		licenses[m.Path] = slices.Compact(ids)
	}

	// A module may point to Apache-2.0 without holding its text; then
	// another module's copy must be here.
	apache := false
	for _, t := range texts {
		apache = apache || strings.Contains(fold(t.body), " grant of patent license ")
	}
	for path, ids := range licenses {
		if slices.Contains(ids, "Apache-2.0") && !apache {
			return nil, fmt.Errorf("%s is under Apache-2.0 but no module brings the license's full text", path)
		}
	}

	var w bytes.Buffer
	fmt.Fprint(&w, `THIRD-PARTY NOTICES FOR INFERGATE

The infergate binary (every platform that scripts/release.sh builds) links
the Go standard library and the Go modules listed below. Their licenses and
notices follow the list; each distinct text appears once, headed by the
modules it belongs to. infergate's own dashboard, demo model and protocol
definitions are written in its repository and are not listed.

Generated by notices/gen (go generate ./notices) from the go command's
package graph; do not edit by hand.

`)
	width := 0
	for _, m := range mods {
		width = max(width, len(m.name()))
	}
	for _, m := range mods {
		fmt.Fprintf(&w, "%-*s  %-36s  %s\n", width, m.name(), m.version(), strings.Join(licenses[m.Path], " AND "))
	}
	for _, t := range texts {
		fmt.Fprintf(&w, "\n%s\n", strings.Repeat("=", 78))
		for _, o := range t.owner {
			fmt.Fprintln(&w, o)
		}
		fmt.Fprintf(&w, "%s\n\n%s", strings.Repeat("-", 78), t.body)
	}
	return w.Bytes(), nil
}

func (m *Module) name() string {
	if m.Path == "std" {
		return "Go standard library"
	}
	return m.Path
}

func (m *Module) version() string {
	switch {
	case m.Path == "std":
		// Not the Go version: that changes with the toolchain, the license
		// does not, and `infergate version` prints it.
		return "(the Go release it was built with)"
	case m.Replace != "":
		return m.Version + " => " + m.Replace
	}
	return m.Version
}

func (m *Module) title() string {
	if m.Path == "std" {
		return m.name()
	}
	return m.name() + " " + m.version()
}
