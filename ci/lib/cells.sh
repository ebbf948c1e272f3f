# Sourced by shell scripts that need a cell of ci/cells.
#   cell_get NAME   fills the associative array CELL (cell, kubernetes, kind, runtime,
#                   rootfs, containerd, runc, default); NAME "default" is the default cell
#   cell_names      prints every cell's name, in file order
# Errors name the file and line.
CELLS_FILE=${CELLS_FILE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/cells}
declare -gA CELL=()

_cell_lines() {  # prints "LINENO<TAB>LINE" for each cell line
  awk '{ sub(/#.*/, "") } NF { print NR "\t" $0 }' "$CELLS_FILE"
}

cell_names() {
  local n line
  while IFS=$'\t' read -r n line; do
    _cell_parse "$n" "$line" || return 1
    echo "${CELL[cell]}"
  done < <(_cell_lines)
}

_cell_parse() {  # LINENO LINE -> CELL
  local n=$1 kv key
  CELL=()
  for kv in $2; do
    [[ $kv == *=* ]] || { echo "$CELLS_FILE:$n: '$kv' is not key=value" >&2; return 1; }
    key=${kv%%=*}
    case $key in
      cell|kubernetes|kind|runtime|rootfs|containerd|runc|default) CELL[$key]=${kv#*=} ;;
      *) echo "$CELLS_FILE:$n: unknown field '$key'" >&2; return 1 ;;
    esac
  done
  for key in cell kubernetes kind runtime rootfs containerd runc; do
    [[ -n ${CELL[$key]:-} ]] || { echo "$CELLS_FILE:$n: missing field '$key'" >&2; return 1; }
  done
  CELL[default]=${CELL[default]:-no}
}

cell_get() {
  local want=$1 n line found=0
  while IFS=$'\t' read -r n line; do
    _cell_parse "$n" "$line" || return 1
    if [[ ${CELL[cell]} == "$want" || ($want == default && ${CELL[default]} == yes) ]]; then
      found=1; break
    fi
  done < <(_cell_lines)
  if ((found == 0)); then
    echo "$CELLS_FILE: no cell '$want' (cells: $(cell_names | paste -sd' '))" >&2
    return 1
  fi
}

cell_tag() { echo "terminus/kind-node:${CELL[kubernetes]}-${CELL[runtime]}"; }
