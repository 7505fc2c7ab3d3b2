package deploy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/testutil"
)

// instruction is one line of a Dockerfile, continuation lines joined.
type instruction struct {
	cmd  string // upper case
	args string
}

func dockerfile(t *testing.T, file string) []instruction {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// copyInstr is a COPY of the final stage.
type copyInstr struct {
	chown     string
	src, dest string
}

// TestContainerContext checks deploy/Dockerfile where no image builder runs (CI has none):
// it builds the binary with scripts/release.sh as a release would, resolves every COPY
// source in that build context (they must exist and not be excluded by .dockerignore),
// assembles the image's files from exactly those COPY instructions into a directory, and
// — as root, which CI is — runs the binary chrooted into it as the Dockerfile's USER with
// its ENV: `infergate version`, then `infergate run` until /readyz answers 200, then
// SIGTERM and exit status 0. That proves the binary is static, needs nothing the image does
// not have, and can write its data dir as the non-root user. (The base image's own files —
// CA certificates, tzdata, /etc/passwd — are not there; infergate needs none of them to start.)
func TestContainerContext(t *testing.T) {
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		t.Skip("the image is built for linux/amd64 and linux/arm64")
	}
	ins := dockerfile(t, "Dockerfile")
	var (
		from, user string
		entry      []string
		args       = map[string]string{}
		env        []string
		copies     []copyInstr
	)
	const version = "v0.0.0-container-test"
	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			from = in.args
			copies = nil // only the final stage's files are in the image
		case "ARG":
			args[in.args] = ""
		case "COPY":
			f := strings.Fields(in.args)
			c := copyInstr{}
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				if v, ok := strings.CutPrefix(f[0], "--chown="); ok {
					c.chown = v
				} else {
					t.Errorf("COPY %s: flag %s not understood by this test", in.args, f[0])
				}
				f = f[1:]
			}
			if len(f) != 2 {
				t.Fatalf("COPY %s: want one source and one destination", in.args)
			}
			c.src, c.dest = f[0], f[1]
			copies = append(copies, c)
		case "USER":
			user = in.args
		case "ENV":
			for _, kv := range strings.Fields(in.args) {
				env = append(env, kv)
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &entry); err != nil {
				t.Fatalf("ENTRYPOINT %s: want the exec (JSON) form: %v", in.args, err)
			}
		}
	}
	if !strings.Contains(from, "nonroot") && from != "scratch" {
		t.Errorf("FROM %s: want a static nonroot base (distroless static:nonroot) or scratch", from)
	}
	uid, gid, ok := strings.Cut(user, ":")
	u, err1 := strconv.Atoi(uid)
	g, err2 := strconv.Atoi(gid)
	if !ok || err1 != nil || err2 != nil || u == 0 || g == 0 {
		t.Fatalf("USER %q: want a numeric non-root uid:gid (Kubernetes' runAsNonRoot can only check a number)", user)
	}
	if len(entry) == 0 {
		t.Fatal("no ENTRYPOINT")
	}
	for _, a := range []string{"VERSION", "TARGETARCH"} {
		if _, ok := args[a]; !ok {
			t.Errorf("ARG %s missing", a)
		}
	}

	// The build context: the repository, with dist/ as release.sh leaves it.
	dist := t.TempDir()
	rel := exec.Command("../scripts/release.sh", "--targets", "linux/"+runtime.GOARCH, "--out", dist)
	rel.Env = append(os.Environ(), "VERSION="+version, "JOBS=1")
	if out, err := rel.CombinedOutput(); err != nil {
		t.Fatalf("scripts/release.sh: %v\n%s", err, out)
	}
	resolve := func(src string) string {
		src = strings.NewReplacer("${VERSION}", version, "${TARGETARCH}", runtime.GOARCH).Replace(src)
		if strings.Contains(src, "$") {
			t.Fatalf("COPY source %s uses an ARG this test does not know", src)
		}
		if rest, ok := strings.CutPrefix(src, "dist/"); ok {
			return filepath.Join(dist, rest)
		}
		return filepath.Join("..", src)
	}
	ignore := dockerignore(t, "../.dockerignore")

	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	binary := ""
	for _, c := range copies {
		src := resolve(c.src)
		ctxPath := strings.TrimSuffix(strings.NewReplacer("${VERSION}", version, "${TARGETARCH}", runtime.GOARCH).Replace(c.src), "/")
		if ignore(ctxPath) {
			t.Errorf("COPY %s: .dockerignore excludes it from the build context", c.src)
		}
		fi, err := os.Stat(src)
		if err != nil {
			t.Fatalf("COPY %s: not in the build context: %v", c.src, err)
		}
		owner := [2]int{0, 0}
		if c.chown != "" {
			o, gr, _ := strings.Cut(c.chown, ":")
			owner[0], _ = strconv.Atoi(o)
			owner[1], _ = strconv.Atoi(gr)
		}
		if fi.IsDir() {
			copyTree(t, src, filepath.Join(root, c.dest), owner, ignore, ctxPath)
		} else {
			dst := filepath.Join(root, c.dest)
			copyFile(t, src, dst, fi.Mode(), owner)
			binary = c.dest
		}
	}
	if binary != entry[0] {
		t.Fatalf("ENTRYPOINT %s is not the copied binary %s", entry[0], binary)
	}

	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("running the image's files chrooted needs root (CI runs as root)")
		}
		t.Skip("chroot needs root; the build context was checked")
	}
	cred := &syscall.Credential{Uid: uint32(u), Gid: uint32(g)}
	version0 := exec.Command(entry[0], "version")
	version0.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: cred}
	version0.Dir = "/"
	out, err := version0.CombinedOutput()
	if err != nil || !strings.Contains(string(out), version) {
		t.Fatalf("chroot: infergate version: %v\n%s", err, out)
	}

	// The image's command, its ENV, free loopback ports instead of the defaults (other
	// tests run on this machine), and the data dir the image provides.
	cmd := exec.Command(entry[0], "run", "--demo=false",
		"--broker-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", "--rest-listen", "127.0.0.1:0")
	httpPort := freePort(t)
	cmd.Env = append(env, "INFERGATE_HTTP_LISTEN=127.0.0.1:"+strconv.Itoa(httpPort), "INFERGATE_BROKER_DURABILITY=os")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Credential: cred}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = testutil.Writer(t), testutil.Writer(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", httpPort)
	testutil.Eventually(t, 2*time.Minute, func() error {
		select {
		case err := <-exited:
			t.Fatalf("infergate run exited in the chroot: %v", err)
		default:
		}
		resp, err := http0.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("/readyz %d: %s", resp.StatusCode, b)
		}
		return nil
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Fatalf("infergate run after SIGTERM: %v (want exit status 0)", err)
	}
	// The data dir was written by the non-root user.
	fi, err := os.Stat(filepath.Join(root, "var/lib/infergate/admin-token"))
	if err != nil {
		t.Fatalf("no admin token in the image's data dir: %v", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != u {
		t.Errorf("admin-token owned by uid %d, want %d", st.Uid, u)
	}
}

var http0 = &http.Client{Timeout: 5 * time.Second}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// dockerignore returns whether a context path is excluded: the last matching pattern
// wins, a pattern matches the path or one of its parents, and "!" re-includes (Docker's
// rules, without "**", which the file does not use).
func dockerignore(t *testing.T, file string) func(string) bool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	type pat struct {
		glob   string
		negate bool
	}
	var pats []pat
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		p := pat{}
		if s, ok := strings.CutPrefix(l, "!"); ok {
			p.negate, l = true, s
		}
		if strings.Contains(l, "**") {
			t.Fatalf(".dockerignore: %s: ** is not understood by this test", l)
		}
		p.glob = filepath.Clean(l)
		pats = append(pats, p)
	}
	return func(path string) bool {
		excluded := false
		for _, p := range pats {
			for q := path; q != "." && q != "/"; q = filepath.Dir(q) {
				if ok, _ := filepath.Match(p.glob, q); ok {
					excluded = !p.negate
					break
				}
			}
		}
		return excluded
	}
}

func copyTree(t *testing.T, src, dst string, owner [2]int, ignore func(string) bool, ctxPath string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if ignore(filepath.Join(ctxPath, rel)) {
			return nil
		}
		target := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			if os.Geteuid() != 0 {
				return nil
			}
			return os.Lchown(target, owner[0], owner[1])
		}
		copyFile(t, p, target, fi.Mode(), owner)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, src, dst string, mode fs.FileMode, owner [2]int) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode.Perm()); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(dst, owner[0], owner[1]); err != nil {
			t.Fatal(err)
		}
	}
}
