#!/bin/sh
# Prints the Debian version of the package `make deb` builds, from git:
#   tag vX.Y.Z on HEAD          X.Y.Z-1
#   N commits after vX.Y.Z      X.Y.Z+gitYYYYMMDD.N.HASH-1
#   no tag                      0.0~gitYYYYMMDD.HASH-1
# YYYYMMDD is the commit's date (UTC), so versions of later commits sort
# after earlier ones; "+dirty" follows HASH when the work tree has changes
# that are not committed. -1 is the Debian revision.
set -eu
cd "$(dirname "$0")/../.."
if ! git rev-parse --git-dir >/dev/null 2>&1; then
	echo "version.sh: not a git clone: give the version (make deb DEB_VERSION=...)" >&2
	exit 1
fi
hash=$(git rev-parse --short=12 HEAD)
date=$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d HEAD)
dirty=
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
	dirty=+dirty
fi
if tag=$(git describe --tags --match 'v[0-9]*' --abbrev=0 2>/dev/null); then
	upstream=${tag#v}
	n=$(git rev-list --count "$tag..HEAD")
	if [ "$n" -eq 0 ] && [ -z "$dirty" ]; then
		echo "$upstream-1"
	else
		echo "$upstream+git$date.$n.$hash$dirty-1"
	fi
else
	echo "0.0~git$date.$hash$dirty-1"
fi
