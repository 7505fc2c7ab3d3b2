package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const mit = `MIT License

Copyright (c) 2024 Someone

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND.
`

const bsd2 = `Copyright (c) 2020 Someone. All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

1. Redistributions of source code must retain the above copyright notice,
   this list of conditions and the following disclaimer.
2. Redistributions in binary form must reproduce the above copyright notice,
   this list of conditions and the following disclaimer in the documentation
   and/or other materials provided with the distribution.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS".
`

// bsd3 is bsd2 with the third clause.
var bsd3 = strings.Replace(bsd2, "THIS SOFTWARE", `3. Neither the name of the copyright holder nor the names of its
   contributors may be used to endorse or promote products derived from
   this software without specific prior written permission.

THIS SOFTWARE`, 1)

const apacheNotice = `Copyright 2011-2016 Canonical Ltd.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at
`

const isc = `Copyright (c) 2015 Someone

Permission to use, copy, modify, and/or distribute this software for any
purpose with or without fee is hereby granted, provided that the above
copyright notice and this permission notice appear in all copies.
`

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"MIT", mit, []string{"MIT"}},
		{"BSD-2-Clause", bsd2, []string{"BSD-2-Clause"}},
		{"BSD-3-Clause", bsd3, []string{"BSD-3-Clause"}},
		{"ISC", isc, []string{"ISC"}},
		{"Apache notice", apacheNotice, []string{"Apache-2.0"}},
		{"two in one file", "This project is covered by two licenses.\n\n" + mit + "\n" + apacheNotice, []string{"MIT", "Apache-2.0"}},
		{"CRLF and wrapping", strings.ReplaceAll(strings.ReplaceAll(mit, "\n", "\r\n"), "free of charge, to", "free of charge,\r\n  to"), []string{"MIT"}},
		{"GPL", "GNU GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007\n", nil},
		{"proprietary", "Copyright (c) 2024 Vendor. All rights reserved. Not for redistribution.\n", nil},
		{"half an MIT", "Permission is hereby granted, free of charge, to any person obtaining a copy\n", nil},
	} {
		got := Classify(tc.text)
		slices.Sort(got)
		slices.Sort(tc.want)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: Classify = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// module writes a fake module: files maps a slash path to its content.
func module(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRenderRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"unknown license", map[string]string{"LICENSE": "All rights reserved.\n"}, "not a license this generator knows"},
		{"a NOTICE but no license", map[string]string{"NOTICE": "Some notice.\n"}, "no LICENSE or COPYING file"},
		{"no files", map[string]string{"go.mod": "module example.com/x\n"}, "no LICENSE or COPYING file"},
		{"Apache by reference only", map[string]string{"LICENSE": apacheNotice}, "no module brings the license's full text"},
	} {
		dir := module(t, tc.files)
		var names []string
		for n := range tc.files {
			if isLicense(n) || strings.HasPrefix(n, "NOTICE") {
				names = append(names, n)
			}
		}
		_, err := Render([]*Module{{Path: "example.com/x", Version: "v1.0.0", Dir: dir, Files: names}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Render error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// TestLinked builds a small module that uses one package of a dependency
// (replaced by a local directory, so no download): the dependency's root
// LICENSE and the license in the linked package's directory are taken, the
// one beside an unlinked package is not, the standard library gets Go's,
// and identical texts are written once.
func TestLinked(t *testing.T) {
	dep := module(t, map[string]string{
		"go.mod":         "module example.com/dep\n\ngo 1.22\n",
		"LICENSE":        bsd3,
		"used/LICENSE":   mit,
		"used/used.go":   "package used\n\nfunc F() int { return 1 }\n",
		"unused/COPYING": isc,
		"unused/x.go":    "package unused\n",
		"other/NOTICE":   "not linked\n",
	})
	dep2 := module(t, map[string]string{
		"go.mod":  "module example.com/dep2\n\ngo 1.22\n",
		"LICENSE": mit, // same text as dep's used/LICENSE: written once
		"d.go":    "package dep2\n\nfunc G() int { return 2 }\n",
	})
	main := module(t, map[string]string{
		"go.mod": "module example.com/app\n\ngo 1.22\n\nrequire (\n\texample.com/dep v1.2.3\n\texample.com/dep2 v0.1.0\n)\n\n" +
			"replace example.com/dep v1.2.3 => " + dep + "\n\nreplace example.com/dep2 v0.1.0 => " + dep2 + "\n",
		"cmd/infergate/main.go": "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/dep/used\"\n\t\"example.com/dep2\"\n)\n\nfunc main() { fmt.Println(used.F() + dep2.G()) }\n",
	})
	mods, err := Linked(main, []string{"linux/amd64", "linux/armv7"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range mods {
		got = append(got, m.Path+" "+m.Version+" ["+strings.Join(m.Files, " ")+"]")
	}
	want := []string{"std  [LICENSE PATENTS]", "example.com/dep v1.2.3 [LICENSE used/LICENSE]", "example.com/dep2 v0.1.0 [LICENSE]"}
	if !slices.Equal(got, want) {
		t.Fatalf("Linked:\n got %q\nwant %q", got, want)
	}
	if mods[1].Replace != dep {
		t.Errorf("replacement %q, want %q", mods[1].Replace, dep)
	}
	b, err := Render(mods)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, want := range []string{
		"example.com/dep", "BSD-3-Clause AND MIT", "example.com/dep2", "Go standard library",
		"example.com/dep v1.2.3 => " + dep + ": used/LICENSE\nexample.com/dep2 v0.1.0 => " + dep2 + ": LICENSE\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("notices lack %q:\n%s", want, text)
		}
	}
	if n := strings.Count(text, "Permission is hereby granted"); n != 1 {
		t.Errorf("the MIT text appears %d times, want once", n)
	}
	if strings.Contains(text, "not linked") || strings.Contains(text, "Permission to use, copy, modify") {
		t.Error("license files of packages that are not linked were included")
	}
}
