package rest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/modelserver"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/inference/tfserving"
)

// The REST API as the embedded model server mounts it: a row request for the
// demo model answers exactly the in-process prediction, every float32 intact.
func TestDemoOverEmbeddedModelServer(t *testing.T) {
	dir := t.TempDir()
	if err := demo.Install(dir); err != nil {
		t.Fatal(err)
	}
	mc := modelserver.DefaultConfig()
	mc.GRPCListen, mc.RESTListen = "", "127.0.0.1:0"
	mc.Models = []tfserving.ModelConfig{{Name: demo.Name, BasePath: filepath.Join(dir, demo.Name)}}
	mc.Limits = modelserver.Limits{}
	srv, err := modelserver.New(mc, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("model server: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := srv.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}

	g := demo.NewGenerator(7)
	var rows [][]float32
	var flat []float32
	for range 8 {
		r, _ := g.Reading()
		rows = append(rows, r)
		flat = append(flat, r...)
	}
	body, _ := json.Marshal(map[string]any{"instances": rows})
	resp, err := http.Post(fmt.Sprintf("http://%s/v1/models/demo:predict", srv.RESTAddr()), "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var got struct{ Predictions [][]float32 }
	if resp.StatusCode != 200 || json.Unmarshal(b, &got) != nil {
		t.Fatalf("predict = %d %s", resp.StatusCode, b)
	}
	want, err := srv.InProcess().Predict(ctx, model.Spec{Name: demo.Name},
		map[string]*tensor.Tensor{demo.InputName: tensor.FromFloat32(flat, 8, demo.Channels)})
	if err != nil {
		t.Fatal(err)
	}
	scores := want.Outputs[demo.OutputName].Float32s()
	if len(got.Predictions) != 8 {
		t.Fatalf("%d predictions: %s", len(got.Predictions), b)
	}
	for i, p := range got.Predictions {
		if len(p) != 1 || p[0] != scores[i] {
			t.Errorf("row %d: REST %v, in-process %v", i, p, scores[i])
		}
	}
}
