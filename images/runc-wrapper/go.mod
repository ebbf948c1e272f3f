module terminus.local/runc-wrapper

go 1.22
