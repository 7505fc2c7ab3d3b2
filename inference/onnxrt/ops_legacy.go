package onnxrt

import (
	"errors"
	"fmt"
)

// checkLegacy refuses the operator forms of opsets 1 to 6 whose meaning the
// kernels (written for opset 7 on) do not implement. The rest load as they
// are: consumed_inputs was only a memory hint, is_test only marked inference,
// and broadcast=1 without an axis aligns trailing dimensions like numpy does.
func checkLegacy(x *nodeCtx) error {
	switch x.n.op {
	case "Add", "Sub", "Mul", "Div", "Pow", "Gemm":
		if _, ok := x.attrs["axis"]; ok {
			return fmt.Errorf("broadcasting along an axis (opset %d) is not supported", x.c.opset)
		}
	case "Cast":
		if x.c.opset < 6 {
			return fmt.Errorf("Cast with a string type (opset %d) is not supported", x.c.opset)
		}
	case "BatchNormalization":
		if sp, err := x.intAttr("spatial", 1); err != nil || sp != 1 {
			return errors.New("spatial=0 (per-element statistics) is not supported")
		}
	case "Concat":
		if _, ok := x.attrs["axis"]; !ok {
			return errors.New("Concat without an axis (default 1 before opset 4) is not supported")
		}
	}
	return nil
}
