// Command overboot-init is the overboot agent: the /init of the initramfs.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "overboot-init: not implemented yet")
	os.Exit(1)
}
