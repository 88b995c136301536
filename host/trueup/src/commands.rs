//! One module per `trueup` subcommand.
