"""`keras-igc info`: the registered networks, their counts, the forms rules."""


def add(commands):
    info = commands.add_parser(
        "info",
        help="parameters and MACs of named networks",
        description="Print a Markdown table of stage-1 width, convolution weights, "
        "all weights and multiply-accumulates of registered networks.",
    )
    info.add_argument(
        "models", nargs="*", help="names from the registry (default: all); "
        "see --list",
    )  # fmt: skip
    info.add_argument("--depth", type=int, default=20, help="depth of CIFAR networks")
    info.add_argument("--list", action="store_true", help="list the names and exit")
    info.add_argument(
        "--forms", action="store_true", help="print the rule table that says "
        "which form each layer runs in each runtime (keras_igc.forms) and exit",
    )  # fmt: skip
    info.set_defaults(run=run)


def run(args):
    from keras_igc import applications, forms

    if args.forms:
        from keras_igc.export import runtimes

        print(runtimes.table())
        print()
        print(forms.rules_table())
        print()
        print(runtimes.int8_rules_table())
    elif args.list:
        print("\n".join(applications.list_models(family="igc")))
    else:
        print(applications.summary_table(args.models or None, depth=args.depth))
