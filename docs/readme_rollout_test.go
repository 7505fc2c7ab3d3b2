package docs_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/testutil"
)

// The README's "Roll out a new model version", run as written against
// `infergate run --demo` (on free ports instead of the defaults): every
// command succeeds, the replay compares requests of the demo traffic with
// the full agreement a copy of the model must show, and the rollout ends
// promoted.
func TestReadmeRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the appliance")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	sec := section(t, string(b), "Roll out a new model version")
	cmds := commands(sec)
	if len(cmds) < 10 {
		t.Fatalf("found only %d commands in the section: %q", len(cmds), cmds)
	}

	// The README's ./infergate-data, for the commands that name it.
	app := startReadmeApp(t, "infergate-data", nil, "--demo")
	dir, env, httpAddr := app.dir, app.env, app.http

	base := "http://" + httpAddr
	get := func(path string, out any) error {
		tok, err := os.ReadFile(filepath.Join(dir, "infergate-data", "admin-token"))
		if err != nil {
			return err
		}
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return json.NewDecoder(resp.Body).Decode(out)
	}
	// Some demo traffic to capture (20 requests a second).
	testutil.Eventually(t, 2*time.Minute, func() error {
		var topics struct {
			Topics []struct {
				Role       string `json:"role"`
				Partitions []struct {
					End int64 `json:"end_offset"`
				} `json:"partitions"`
			} `json:"topics"`
		}
		if err := get("/api/v1/topics", &topics); err != nil {
			return err
		}
		n := int64(0)
		for _, tp := range topics.Topics {
			for _, p := range tp.Partitions {
				if tp.Role == "requests" {
					n += p.End
				}
			}
		}
		if n < 40 {
			return fmt.Errorf("%d requests so far", n)
		}
		return nil
	})

	outs := map[string]string{}
	for _, c := range cmds {
		c = strings.ReplaceAll(c, "http://127.0.0.1:8080", base)
		sh := exec.Command("sh", "-c", c)
		sh.Env, sh.Dir = env, dir
		out, err := sh.CombinedOutput()
		if err != nil {
			t.Fatalf("README command %q: %v\n%s", c, err, out)
		}
		t.Logf("$ %s\n%s", c, out)
		outs[c] = string(out)
		if strings.HasPrefix(c, "curl ") {
			// A person types the next command after the upload loaded; the
			// test waits for it.
			testutil.Eventually(t, time.Minute, func() error {
				var ms struct {
					Models []struct {
						Name     string `json:"name"`
						Versions []struct {
							Version int64  `json:"version"`
							State   string `json:"state"`
						} `json:"versions"`
					} `json:"models"`
				}
				if err := get("/api/v1/models", &ms); err != nil {
					return err
				}
				for _, m := range ms.Models {
					for _, v := range m.Versions {
						if m.Name == "demo" && v.Version == 2 && v.State == "AVAILABLE" {
							return nil
						}
					}
				}
				return fmt.Errorf("demo version 2 not loaded: %+v", ms.Models)
			})
		}
	}
	var replay, status string
	for c, out := range outs {
		switch {
		case strings.HasPrefix(c, "infergate rollout replay"):
			replay = out
		case strings.HasPrefix(c, "infergate rollout status"):
			status = out
		}
	}
	m := regexp.MustCompile(`compared (\d+) requests \(score\), agreement 100\.00%`).FindStringSubmatch(replay)
	if m == nil {
		t.Fatalf("the replay of a copy of the model does not show full agreement:\n%s", replay)
	}
	if n, _ := strconv.Atoi(m[1]); n < 1 {
		t.Errorf("the replay compared %d requests", n)
	}
	if !strings.Contains(status, "promoted") {
		t.Errorf("the rollout did not end promoted:\n%s", status)
	}
}
