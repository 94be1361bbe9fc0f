#!/bin/sh
# The stand-in's /lambda-entrypoint.sh, with the contract of the Lambda base image's: the handler is the one argument;
# without AWS_LAMBDA_RUNTIME_API (a plain `docker run`), the runtime interface emulator serves the Runtime API on :8080;
# under Lambda or SAM CLI (which start their own emulator and set the variable) the runtime client runs alone.
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"
export AWS_EXECUTION_ENV=AWS_Lambda_python3.12
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  exec /usr/local/bin/aws-lambda-rie /var/lang/bin/python3.12 -m awslambdaric "$_HANDLER"
else
  exec /var/lang/bin/python3.12 -m awslambdaric "$_HANDLER"
fi
