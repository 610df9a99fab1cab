"""A small terminal emulator for tests: feed it what a program wrote to a pseudo-terminal and
read back the text a person would see (the screen and what scrolled off it).

A live display redraws itself many times (cursor up, erase line, write again), so the raw
output holds every frame; only the screen tells whether an answer is shown once or twice.
It knows what rich and prompt_toolkit write: printable text, CR, LF, backspace, cursor moves
(CSI A B C D G H), erase in line and in display (CSI K, J) and autowrap (CSI ? 7 h/l). Colours,
other modes and OSC strings change nothing on screen here and are ignored.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(
    r"\x1b\[(?P<params>[0-?]*)[ -/]*(?P<final>[@-~])"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC
    r"|\x1b[()][0-9A-Za-z]"  # character set
    r"|\x1b[^\[\]]"  # other ESC
    r"|(?P<control>[\x00-\x1f])"
    r"|(?P<text>[^\x00-\x1f\x1b]+)"
)


class Screen:
    """`columns` x `rows` of text with unlimited scrollback above it."""

    def __init__(self, columns: int = 100, rows: int = 40) -> None:
        self.columns = columns
        self.rows = rows
        self.lines: list[list[str]] = [[]]
        self.row = 0  # the cursor, as an index into `lines`
        self.col = 0
        self.top = 0  # the first line on screen
        self.autowrap = True
        self._wrap_next = False  # at the last column: the next character wraps first

    def feed(self, data: str) -> Screen:
        for token in _TOKEN.finditer(data):
            if token["text"] is not None:
                for char in token["text"]:
                    self._put(char)
            elif token["control"] is not None:
                self._control(token["control"])
            elif token["final"] is not None:
                self._csi(token["params"], token["final"])
        return self

    @property
    def text(self) -> str:
        """Every line, scrollback first, without trailing blanks."""
        out = [("".join(line)).rstrip() for line in self.lines]
        while out and not out[-1]:
            out.pop()
        return "\n".join(out)

    # -- what the program writes

    def _put(self, char: str) -> None:
        if self._wrap_next:
            self._wrap_next = False
            self.col = 0
            self._line_feed()
        line = self.lines[self.row]
        if len(line) <= self.col:
            line.extend(" " * (self.col - len(line) + 1))
        line[self.col] = char
        if self.col < self.columns - 1:
            self.col += 1
        elif self.autowrap:
            self._wrap_next = True

    def _control(self, char: str) -> None:
        self._wrap_next = False
        if char == "\r":
            self.col = 0
        elif char == "\n":
            self._line_feed()
        elif char == "\b":
            self.col = max(0, self.col - 1)

    def _line_feed(self) -> None:
        self.row += 1
        if self.row == len(self.lines):
            self.lines.append([])
        self.top = max(self.top, self.row - self.rows + 1)

    def _csi(self, params: str, final: str) -> None:
        if params.startswith("?"):
            if params[1:] == "7" and final in "hl":
                self.autowrap = final == "h"
            return
        numbers = [int(p) if p else 0 for p in params.split(";")] if params else []
        n = max(numbers[0], 1) if numbers else 1
        self._wrap_next = False
        if final == "A":
            self.row = max(self.top, self.row - n)
        elif final == "B":
            for _ in range(min(n, self.top + self.rows - 1 - self.row)):
                self._line_feed()
        elif final == "C":
            self.col = min(self.columns - 1, self.col + n)
        elif final == "D":
            self.col = max(0, self.col - n)
        elif final == "G":
            self.col = min(self.columns - 1, n - 1)
        elif final == "H":
            row = n if numbers else 1
            col = max(numbers[1], 1) if len(numbers) > 1 else 1
            self.row = self.top
            for _ in range(row - 1):
                self._line_feed()
            self.col = min(self.columns - 1, col - 1)
        elif final == "K":
            self._erase_in_line(numbers[0] if numbers else 0)
        elif final == "J":
            self._erase_in_display(numbers[0] if numbers else 0)

    def _erase_in_line(self, how: int) -> None:
        line = self.lines[self.row]
        if how == 0:
            del line[self.col :]
        elif how == 1:
            line[: self.col + 1] = " " * min(len(line), self.col + 1)
        else:
            line.clear()

    def _erase_in_display(self, how: int) -> None:
        if how == 0:
            del self.lines[self.row][self.col :]
            del self.lines[self.row + 1 :]
        elif how == 2:
            for line in self.lines[self.top :]:
                line.clear()


def screen_text(output: str, columns: int = 100, rows: int = 40) -> str:
    """What `output` (a pseudo-terminal's output, as read) leaves on a terminal of that size."""
    return Screen(columns, rows).feed(output).text
