package demo

import (
	"encoding/json"
	"strconv"

	"github.com/infergate/infergate/internal/jsonscan"
)

// Request is a request record for the demo model: the pipeline's short
// form (docs/pipeline.md), an id and one reading.
type Request struct {
	RequestID string    `json:"request_id"`
	Features  []float32 `json:"features"`
}

// AppendRequest appends the JSON of Request{id, features} to b, without
// reflection: the bench formats hundreds of thousands of them.
func AppendRequest(b []byte, id string, features []float32) []byte {
	b = append(b, `{"request_id":`...)
	b = jsonscan.AppendString(b, id)
	b = append(b, `,"features":[`...)
	for i, f := range features {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
	}
	return append(b, "]}"...)
}

// AnomalyThreshold is the score above which the demo model calls a reading
// anomalous.
const AnomalyThreshold = 0.5

// Score reads the demo model's anomaly score from a result record:
// "prediction" is the request's row of the output, [score] (or the bare
// score).
func Score(result []byte) (float64, bool) {
	var res struct {
		Prediction json.RawMessage `json:"prediction"`
	}
	if json.Unmarshal(result, &res) != nil || len(res.Prediction) == 0 {
		return 0, false
	}
	var row []float64
	if json.Unmarshal(res.Prediction, &row) == nil && len(row) == 1 {
		return row[0], true
	}
	var v float64
	if json.Unmarshal(res.Prediction, &v) == nil {
		return v, true
	}
	return 0, false
}
