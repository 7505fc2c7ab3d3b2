package packaging

import (
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/infergate/infergate/appliance"
)

// TestDebConfig loads the packaged /etc/infergate/infergate.yaml as the
// service does, and again with every commented setting uncommented, so
// that a commented default can neither be misspelt nor invalid.
func TestDebConfig(t *testing.T) {
	data, err := os.ReadFile("deb/infergate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	uncomment := regexp.MustCompile(`(?m)^# ?( *[a-z_]+:.*)$`)
	all := uncomment.ReplaceAllString(string(data), "$1")
	if all == string(data) {
		t.Fatal("no commented settings found")
	}
	for name, text := range map[string]string{"as shipped": string(data), "all uncommented": all} {
		path := filepath.Join(t.TempDir(), "infergate.yaml")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := appliance.Load([]string{"--config", path}, nil, io.Discard)
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if cfg.DataDir != "/var/lib/infergate" {
			t.Errorf("%s: data_dir %q, want /var/lib/infergate (the unit's ReadWritePaths)", name, cfg.DataDir)
		}
	}
}

// TestDeb builds the amd64 .deb and inspects it (dpkg-deb -c, -I, lintian,
// systemd-analyze verify). Under CI (root, a throwaway machine) or with
// INFERGATE_DEB_INSTALL=1 it also installs it as the README says (apt
// install ./file.deb), upgrades it with dpkg -i,
// removes it and purges it, checking the user, the data dir and the token.
func TestDeb(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Debian packages are built and checked on Linux")
	}
	dpkgDeb := needTool(t, "dpkg-deb")
	deb := buildDeb(t, buildRelease(t, "linux", runtime.GOARCH, ""), runtime.GOARCH)
	inspectDeb(t, dpkgDeb, deb, runtime.GOARCH)

	t.Run("install", func(t *testing.T) {
		if os.Getenv("CI") == "" && os.Getenv("INFERGATE_DEB_INSTALL") == "" {
			t.Skip("installs into this machine's /usr, /etc and /var: runs under CI or with INFERGATE_DEB_INSTALL=1")
		}
		if os.Geteuid() != 0 {
			t.Fatal("dpkg -i needs root")
		}
		if exec.Command("dpkg-query", "-W", "infergate").Run() == nil {
			t.Fatal("a package infergate is installed already; not touching it")
		}
		dpkg := needTool(t, "dpkg")
		t.Cleanup(func() { exec.Command(dpkg, "--purge", "infergate").Run() })

		// The first install is the README's command (apt with a local
		// file, which resolves Depends offline from what is installed);
		// the upgrade below uses dpkg -i.
		first := cmdOut(t, needTool(t, "apt-get"), "install", "-y", "--no-install-recommends", deb)
		if !strings.Contains(first, "sudo cat /var/lib/infergate/admin-token") {
			t.Errorf("postinst did not say how to read the admin token:\n%s", first)
		}
		token := readFile(t, "/var/lib/infergate/admin-token")
		if len(strings.TrimSpace(token)) != 48 || strings.Contains(first, strings.TrimSpace(token)) {
			t.Errorf("admin token %q: want 48 hex digits, never printed", token)
		}
		st := cmdOut(t, "stat", "-c", "%U:%G %a", "/var/lib/infergate", "/var/lib/infergate/admin-token")
		if st != "infergate:infergate 750\ninfergate:infergate 600\n" {
			t.Errorf("owner and mode of the data dir and token:\n%s", st)
		}
		if sh := cmdOut(t, "getent", "passwd", "infergate"); !strings.Contains(sh, ":/var/lib/infergate:") {
			t.Errorf("user infergate: %q", sh)
		}
		if v := cmdOut(t, "/usr/bin/infergate", "version"); !strings.Contains(v, testVersion) {
			t.Errorf("installed infergate version: %q", v)
		}

		t.Run("systemd-analyze verify", func(t *testing.T) {
			sa := needTool(t, "systemd-analyze")
			b, err := exec.Command(sa, "verify", "/lib/systemd/system/infergate.service").CombinedOutput()
			if err != nil || strings.Contains(string(b), "infergate.service") {
				t.Errorf("systemd-analyze verify: %v\n%s", err, b)
			}
		})

		// An upgrade (the same package again) keeps the data dir and token
		// and a changed conffile.
		os.WriteFile("/var/lib/infergate/keep-me", []byte("x"), 0o600)
		conf := readFile(t, "/etc/infergate/infergate.yaml")
		os.WriteFile("/etc/infergate/infergate.yaml", []byte(conf+"\n# local change\n"), 0o644)
		again := cmdOut(t, dpkg, "--force-confold", "-i", deb)
		if strings.Contains(again, "admin token was generated") {
			t.Errorf("upgrade generated a new token:\n%s", again)
		}
		if readFile(t, "/var/lib/infergate/admin-token") != token || !fileExists("/var/lib/infergate/keep-me") {
			t.Error("upgrade lost the data dir or the token")
		}
		if !strings.Contains(readFile(t, "/etc/infergate/infergate.yaml"), "# local change") {
			t.Error("upgrade overwrote the changed conffile")
		}

		cmdOut(t, dpkg, "--remove", "infergate")
		if fileExists("/usr/bin/infergate") || !fileExists("/var/lib/infergate/keep-me") {
			t.Error("dpkg --remove: the binary must go, the data dir stay")
		}
		cmdOut(t, dpkg, "--purge", "infergate")
		if fileExists("/var/lib/infergate") || fileExists("/etc/infergate/infergate.yaml") {
			t.Error("dpkg --purge left /var/lib/infergate or the conffile")
		}
	})
}

// TestDebForeignArch builds the arm64 and armhf packages the release
// script ships (armhf carries the ARMv6 binary, which also runs on every
// ARMv7 Raspberry Pi) and inspects them as TestDeb does: contents, control
// fields with the right Architecture, lintian. They are not installed: the
// install path is the same shell scripts TestDeb installs on amd64, and the
// binaries themselves run under qemu in TestEmulated.
func TestDebForeignArch(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Debian packages are built and checked on Linux")
	}
	dpkgDeb := needTool(t, "dpkg-deb")
	for _, c := range []struct {
		debarch, goarch, goarm string
		machine                elf.Machine
	}{
		{"arm64", "arm64", "", elf.EM_AARCH64},
		{"armhf", "arm", "6", elf.EM_ARM},
	} {
		t.Run(c.debarch, func(t *testing.T) {
			deb := buildDeb(t, buildRelease(t, "linux", c.goarch, c.goarm), c.debarch)
			inspectDeb(t, dpkgDeb, deb, c.debarch)
			// The ELF inside must be the one the Architecture field names,
			// or dpkg would install a binary that cannot start.
			dir := t.TempDir()
			cmdOut(t, dpkgDeb, "-x", deb, dir)
			f, err := elf.Open(filepath.Join(dir, "usr/bin/infergate"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Machine != c.machine {
				t.Errorf("usr/bin/infergate in the %s package is for %v, want %v", c.debarch, f.Machine, c.machine)
			}
		})
	}
}

// buildDeb runs deb/build.sh on a release binary and returns the one
// package file it made.
func buildDeb(t *testing.T, bin, debarch string) string {
	t.Helper()
	out := t.TempDir()
	build := exec.Command("deb/build.sh", bin, testVersion, debarch, out)
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("deb/build.sh: %v\n%s", err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("deb/build.sh made %v, want one .deb", debs)
	}
	if want := "infergate_0.0.0~packaging~test_" + debarch + ".deb"; filepath.Base(debs[0]) != want {
		t.Errorf("package file %s, want %s", filepath.Base(debs[0]), want)
	}
	return debs[0]
}

// inspectDeb checks a package's file list and control fields and runs
// lintian on it where lintian is installed.
func inspectDeb(t *testing.T, dpkgDeb, deb, debarch string) {
	t.Helper()
	contents := cmdOut(t, dpkgDeb, "-c", deb)
	for _, want := range []string{
		"-rwxr-xr-x root/root", "./usr/bin/infergate",
		"./etc/infergate/infergate.yaml", "./lib/systemd/system/infergate.service",
		"./usr/lib/sysusers.d/infergate.conf", "./usr/share/doc/infergate/copyright",
		"./usr/share/doc/infergate/install.md.gz", "./usr/share/doc/infergate/THIRD_PARTY_NOTICES.gz",
	} {
		if !strings.Contains(contents, want) {
			t.Errorf("dpkg-deb -c has no %q:\n%s", want, contents)
		}
	}
	info := cmdOut(t, dpkgDeb, "-I", deb)
	for _, want := range []string{"Package: infergate", "Version: 0.0.0~packaging~test", "Architecture: " + debarch, "postinst", "postrm", "prerm", "conffiles"} {
		if !strings.Contains(info, want) {
			t.Errorf("dpkg-deb -I has no %q:\n%s", want, info)
		}
	}
	t.Run("lintian", func(t *testing.T) {
		lintian := needTool(t, "lintian")
		b, err := exec.Command(lintian, "--fail-on", "error,warning", "--suppress-tags", "no-manual-page", deb).CombinedOutput()
		if err != nil {
			t.Errorf("lintian: %v\n%s", err, b)
		}
		t.Logf("lintian: %s", strings.TrimSpace(string(b)))
	})
}

func cmdOut(t *testing.T, name string, args ...string) string {
	t.Helper()
	b, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
	return string(b)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
