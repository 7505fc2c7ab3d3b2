package store

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(rec("decode", "demo", time.Unix(1700000000, 5))))
	f.Add(encodeRecord(&Record{}))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord("X", b)
		if err != nil {
			return
		}
		// Whatever decodes must encode back to bytes that decode to the same record.
		again, err := decodeRecord("X", encodeRecord(r))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reflect.DeepEqual(r, again) {
			t.Fatalf("round trip changed record:\n%+v\n%+v", r, again)
		}
		if !bytes.Equal(encodeRecord(r), encodeRecord(again)) {
			t.Fatal("encoding not stable")
		}
	})
}
