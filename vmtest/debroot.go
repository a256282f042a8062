package vmtest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// DebDepends returns the names of the packages a .deb's Pre-Depends and
// Depends ask for (the first of each set of alternatives; versions
// dropped), as apt-get install takes them.
func DebDepends(deb string) ([]string, error) {
	out, err := exec.Command("dpkg-deb", "-f", deb, "Pre-Depends", "Depends").Output()
	if err != nil {
		return nil, fmt.Errorf("dpkg-deb -f %s: %w", deb, err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		_, list, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		for _, rel := range strings.Split(list, ",") {
			alt, _, _ := strings.Cut(rel, "|")
			name, _, _ := strings.Cut(strings.TrimSpace(alt), " ")
			if name = strings.TrimSpace(name); name != "" && !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	return names, nil
}

// DebRoot returns the systemd test root (SystemdRoot) with packages
// installed from Debian's mirror (chroot apt-get install
// --no-install-recommends), made once and kept in cacheDir/deb-root: the
// tree overboot's package is installed into with dpkg -i, its
// dependencies already there. The tree is made again when the list of
// packages changes. Tests copy it; none writes to it.
func DebRoot(ctx context.Context, cacheDir string, packages []string, log io.Writer) (string, error) {
	debRootMu.Lock()
	defer debRootMu.Unlock()
	base, err := SystemdRoot(ctx, cacheDir, log)
	if err != nil {
		return "", err
	}
	packages = slices.Sorted(slices.Values(packages))
	want := strings.Join(packages, " ") + "\n"
	tree := filepath.Join(cacheDir, "deb-root")
	stamp := filepath.Join(tree, ".overboot-packages")
	if got, err := os.ReadFile(stamp); err == nil && string(got) == want {
		return tree, nil
	}
	t0 := time.Now()
	fmt.Fprintf(log, "vmtest: %s: the systemd root with %s (once)\n", tree, strings.TrimSpace(want))
	tmp := tree + ".tmp"
	os.RemoveAll(tmp)
	if out, err := exec.CommandContext(ctx, "cp", "-a", base, tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("cp -a %s: %w: %s", base, err, out)
	}
	script := "apt-get update -q && apt-get install -y -q --no-install-recommends " + strings.Join(packages, " ") +
		" && apt-get clean && rm -rf /var/lib/apt/lists/*"
	cmd := exec.CommandContext(ctx, "chroot", tmp, "sh", "-c", script)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C"}
	if out, err := cmd.CombinedOutput(); err != nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return "", fmt.Errorf("chroot %s apt-get install %s (Debian's mirror): %w\n%s", tmp, strings.Join(packages, " "), err, strings.Join(lines[max(0, len(lines)-15):], "\n"))
	}
	if err := os.WriteFile(filepath.Join(tmp, ".overboot-packages"), []byte(want), 0o644); err != nil {
		return "", err
	}
	os.RemoveAll(tree)
	if err := os.Rename(tmp, tree); err != nil {
		return "", err
	}
	fmt.Fprintf(log, "vmtest: deb-root done in %.0fs\n", time.Since(t0).Seconds())
	return tree, nil
}

var debRootMu sync.Mutex
