#!/usr/bin/env bash
# Regenerates the binary sample documents of this folder from their committed sources.
#
#   beekeeping.pdf   <- sources/beekeeping.html   (LibreOffice Writer, PDF export)
#   lighthouses.docx <- sources/lighthouses.html  (LibreOffice Writer, Word 2007-365 export)
#   bad/*            broken inputs for the loaders' error tests, derived from the above
#
# Needs: soffice (Debian: libreoffice-writer-nogui), qpdf, zip.
set -euo pipefail
cd "$(dirname "$0")"

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
convert() { # $1 = source, $2 = target filter spec
  soffice -env:UserInstallation="file://$profile" --headless --infilter="HTML (StarWriter)" \
    --convert-to "$2" --outdir . "$1" >/dev/null 2>&1
  local out="$(basename "${1%.*}").${2%%:*}"
  [ -s "$out" ] || { echo "soffice did not write $out" >&2; exit 1; }
}
convert sources/beekeeping.html 'pdf:writer_pdf_Export'
convert sources/lighthouses.html 'docx:MS Word 2007 XML'

mkdir -p bad
# 0-byte files.
: > bad/empty.txt
: > bad/empty.pdf
# A PDF header followed by the first 600 bytes of a real PDF and no cross-reference table.
{ head -c 600 beekeeping.pdf; printf '\n%%%% truncated here: the rest of the file is missing\n'; } > bad/corrupted.pdf
# A PDF that needs a user password to open (AES-256).
qpdf --encrypt kindling-user kindling-owner 256 -- beekeeping.pdf bad/encrypted.pdf
# A zip archive without word/document.xml, named .docx.
tmp="$(mktemp -d)"
printf 'This archive is a plain zip, not a Word document.\n' > "$tmp/notes.txt"
rm -f bad/plain-zip.docx
(cd "$tmp" && zip -q -X "$OLDPWD/bad/plain-zip.docx" notes.txt)
rm -rf "$tmp"
# The first kilobyte of a real DOCX: a zip without its central directory.
head -c 1024 lighthouses.docx > bad/truncated.docx
echo "wrote: beekeeping.pdf lighthouses.docx bad/{empty.txt,empty.pdf,corrupted.pdf,encrypted.pdf,plain-zip.docx,truncated.docx}"
