//go:build !linux

package main

import "os"

func fadviseDontNeed(*os.File) {}
