//go:build race

package onnxrt_test

const raceEnabled = true
