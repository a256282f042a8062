package initagent

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/overboot/overboot/boot"
)

// verifyDevice hashes the first Size bytes of the device.
func verifyDevice(v VerifyDevice) (string, error) {
	f, err := os.Open(v.Path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	start := time.Now()
	h := sha256.New()
	n, err := io.CopyBuffer(h, io.LimitReader(f, v.Size), make([]byte, 1<<20))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", v.Path, err)
	}
	if n != v.Size {
		return "", fmt.Errorf("%s: %d bytes, the image has %d: is the LUN the right one?", v.Path, n, v.Size)
	}
	if got := boot.DigestFromSum(h.Sum(nil)); got != v.Digest {
		return "", fmt.Errorf("%s: sha256 is %s, expected %s: the LUN does not hold the image the document names", v.Path, got.Hex(), v.Digest.Hex())
	}
	return fmt.Sprintf("%d bytes verified in %.1fs", n, time.Since(start).Seconds()), nil
}
