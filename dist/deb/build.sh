#!/usr/bin/env bash
# Builds overboot_VERSION_amd64.deb from what `make build man` made, with
# dpkg-deb alone (no debhelper): `make deb` runs it. Environment:
#   BUILD              build directory: overboot, overboot-init and man/ in it
#   VERSION            the package version (dist/deb/version.sh)
#   MAINTAINER         "Name <address>" for the control file and the changelog
#   SOURCE_DATE_EPOCH  timestamp of every file, the changelog's date
#   GO                 the go command (for the embedded modules' licenses)
# Output: $BUILD/overboot_${VERSION}_amd64.deb; the tree it was made from
# stays in $BUILD/deb/root for a look.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${BUILD:?}" "${VERSION:?}" "${MAINTAINER:?}" "${SOURCE_DATE_EPOCH:?}"
GO=${GO:-go}

for f in "$BUILD/overboot" "$BUILD/overboot-init" "$BUILD/man/overboot.1"; do
	[ -e "$f" ] || { echo "build.sh: $f is missing (make build man)" >&2; exit 1; }
done

root=$BUILD/deb/root
rm -rf "$BUILD/deb"
mkdir -p "$root/DEBIAN"
doc=$root/usr/share/doc/overboot

install -D -m 0755 "$BUILD/overboot" "$root/usr/bin/overboot"
# The agent is not run on the server: mkimage initramfs --agent puts it in
# the initramfs as /init.
install -D -m 0755 "$BUILD/overboot-init" "$root/usr/lib/overboot/overboot-init"

# The unit: dist/overboot.service with the package's paths, and a header
# of its own instead of the from-source install notes.
unit=$root/lib/systemd/system/overboot.service
mkdir -p "$(dirname "$unit")"
{
	cat <<'EOF'
# overboot serve as a systemd service, from the Debian package overboot
# (made from dist/overboot.service by dist/deb/build.sh).
# Configuration: /etc/overboot/overboot.conf. `systemctl reload overboot`
# sends SIGHUP: the configuration is checked first, and a bad one is
# refused (journal: FILE:LINE) while the running one stays.
# Data: /var/lib/overboot, owned by the user overboot (the package's
# postinst makes both). Admin commands that open the data directory run as
# that user: sudo -u overboot overboot token create admin --data /var/lib/overboot
# Local changes: systemctl edit overboot (a drop-in), not this file.
EOF
	sed -n '/^\[Unit\]/,$p' dist/overboot.service |
		sed -e 's|^ExecStart=/usr/local/bin/overboot serve --config /etc/overboot.conf$|ExecStart=/usr/bin/overboot serve --config /etc/overboot/overboot.conf|'
} >"$unit"
chmod 0644 "$unit"
if ! grep -qx 'ExecStart=/usr/bin/overboot serve --config /etc/overboot/overboot.conf' "$unit" || grep -q '/usr/local\|/etc/overboot\.conf' "$unit"; then
	echo "build.sh: dist/overboot.service's ExecStart is not the one this script rewrites; update dist/deb/build.sh" >&2
	exit 1
fi

install -D -m 0644 dist/deb/overboot.conf "$root/etc/overboot/overboot.conf"
install -D -m 0644 dist/deb/lintian-overrides "$root/usr/share/lintian/overrides/overboot"

mkdir -p "$root/usr/share/man/man1"
for m in "$BUILD"/man/*.1; do
	gzip -9n <"$m" >"$root/usr/share/man/man1/$(basename "$m").gz"
done

# Shell completions (the scripts only: completing names asks the server).
install -d "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d"
"$BUILD/overboot" completion bash >"$root/usr/share/bash-completion/completions/overboot"
"$BUILD/overboot" completion zsh >"$root/usr/share/zsh/vendor-completions/_overboot"
"$BUILD/overboot" completion fish >"$root/usr/share/fish/vendor_completions.d/overboot.fish"
chmod 0644 "$root"/usr/share/*/*completion*/*overboot*

install -d "$doc/examples"
gzip -9n <README.md >"$doc/README.md.gz"
gzip -9n <docs/configuration.md >"$doc/configuration.md.gz"
install -m 0644 testdata/overboot.conf "$doc/examples/overboot.conf"

commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
gzip -9n >"$doc/changelog.Debian.gz" <<EOF
overboot ($VERSION) unstable; urgency=medium

  * Built from the overboot git tree at commit $commit with make deb.

 -- $MAINTAINER  $(date -u -R -d "@$SOURCE_DATE_EPOCH")
EOF

# copyright: overboot's own notice, then the Go standard library and every
# Go module linked into the two binaries, each with the license files it
# ships (Apache 2.0 by reference to Debian's copy).
licenses() { # NAME FILE...
	local name=$1
	shift
	[ $# -gt 0 ] || { echo "build.sh: no license file for $name" >&2; exit 1; }
	printf '\n%s\n\n%s\n' "----------------------------------------------------------------------" "$name"
	for f; do
		printf '\n  %s:\n\n' "$(basename "$f")"
		if grep -q 'Apache License' "$f" && grep -q 'Version 2.0, January 2004' "$f" && grep -q 'TERMS AND CONDITIONS' "$f"; then
			printf '    The Apache License, Version 2.0: on Debian systems its text is in\n'
			printf '    /usr/share/common-licenses/Apache-2.0.\n'
		else
			sed -e 's/[[:space:]]*$//' -e 's/^./    &/' "$f"
		fi
	done
}
{
	cat dist/deb/copyright
	printf '\nThe binaries /usr/bin/overboot and /usr/lib/overboot/overboot-init are\n'
	printf 'statically linked Go programs. They contain the Go standard library and\n'
	printf 'the Go modules below, each under the license files it ships, copied here.\n'
	licenses "Go standard library ($("$GO" env GOVERSION))" "$("$GO" env GOROOT)/LICENSE"
	CGO_ENABLED=0 "$GO" list -deps -f '{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}} {{.Dir}}{{end}}{{end}}' ./cmd/overboot ./cmd/overboot-init |
		sort -u | while read -r path version dir; do
			[ -n "$path" ] || continue # a package of the standard library
			# shellcheck disable=SC2046 # license file names have no spaces
			licenses "$path $version" $(find "$dir" -maxdepth 1 -type f -iregex '.*/\(licen[cs]e\|copying\|notice\)[^/]*' | LC_ALL=C sort)
		done
} >"$doc/copyright"

echo /etc/overboot/overboot.conf >"$root/DEBIAN/conffiles"
install -m 0755 dist/deb/postinst dist/deb/prerm dist/deb/postrm "$root/DEBIAN/"

# Every file and directory as dpkg would have it: no group or other write,
# one timestamp.
find "$root" -type d -exec chmod 0755 {} +
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# Installed-Size as dpkg-gencontrol counts it: KiB per file, rounded up,
# and one per other entry.
size=$(find "$root" -path "$root/DEBIAN" -prune -o -mindepth 1 -printf '%y %s\n' |
	awk '$1 == "f" { n += int(($2 + 1023) / 1024); next } { n++ } END { print n }')
sed -e "s|@VERSION@|$VERSION|" -e "s|@MAINTAINER@|$MAINTAINER|" -e "s|@INSTALLED_SIZE@|$size|" dist/deb/control.in >"$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"
touch -h -d "@$SOURCE_DATE_EPOCH" "$root/DEBIAN" "$root"/DEBIAN/*

out=$BUILD/overboot_${VERSION}_amd64.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
echo "$out"
