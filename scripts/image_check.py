"""image_check: the command-line shell shared by check-disk-image.py and check-sd-image.py.

`run(argv, name, doc, check, success)` reads the image named by argv[1], prints every problem
`check(data)` returns, and otherwise the line `success()` gives. Exit status: 0 when the image is
as expected, 1 when it is not, 2 on usage or read errors.
"""

import sys


def run(argv, name, doc, check, success):
    if len(argv) != 2:
        print(doc.strip(), file=sys.stderr)
        return 2
    try:
        with open(argv[1], "rb") as handle:
            data = handle.read()
    except OSError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return 2
    problems = check(data)
    for problem in problems:
        print(f"{name}: {argv[1]}: {problem}")
    if problems:
        return 1
    print(f"{name}: {argv[1]}: {success()}")
    return 0
