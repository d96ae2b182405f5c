//! A DynamoDB client span per operation (retries included) made inside a span, in the database
//! semantic conventions: `db.system`, `db.operation.name` and the table(s). An SDK interceptor
//! rather than a wrapper around each call: every operation of every client built by
//! [`super::client`] gets one.

use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation as op;
use aws_smithy_runtime_api::client::interceptors::context::Input;
use aws_smithy_types::config_bag::{Storable, StoreReplace};

#[derive(Debug, Default, Clone, Copy)]
pub struct DynamoSpans;

/// The span of the operation in flight, kept in its config bag until it ends.
#[derive(Debug)]
struct OperationSpan(tracing::Span);

impl Storable for OperationSpan {
    type Storer = StoreReplace<Self>;
}

/// The operation's name and tables, from its input.
fn describe(input: &Input) -> (&'static str, Vec<String>) {
    macro_rules! single {
        ($($module:ident :: $input:ident => $name:literal),* $(,)?) => {
            $(if let Some(i) = input.downcast_ref::<op::$module::$input>() {
                return ($name, i.table_name().map(str::to_owned).into_iter().collect());
            })*
        };
    }
    single!(
        get_item::GetItemInput => "GetItem",
        put_item::PutItemInput => "PutItem",
        update_item::UpdateItemInput => "UpdateItem",
        delete_item::DeleteItemInput => "DeleteItem",
        query::QueryInput => "Query",
        scan::ScanInput => "Scan",
        create_table::CreateTableInput => "CreateTable",
        describe_table::DescribeTableInput => "DescribeTable",
        update_time_to_live::UpdateTimeToLiveInput => "UpdateTimeToLive",
    );
    let mut tables = Vec::new();
    let mut add = |t: Option<&str>| {
        if let Some(t) = t.filter(|t| !tables.iter().any(|x: &String| x == t)) {
            tables.push(t.to_owned());
        }
    };
    if let Some(i) = input.downcast_ref::<op::transact_write_items::TransactWriteItemsInput>() {
        for item in i.transact_items() {
            add(item.put().map(|p| p.table_name()));
            add(item.update().map(|u| u.table_name()));
            add(item.delete().map(|d| d.table_name()));
            add(item.condition_check().map(|c| c.table_name()));
        }
        return ("TransactWriteItems", tables);
    }
    if let Some(i) = input.downcast_ref::<op::transact_get_items::TransactGetItemsInput>() {
        for item in i.transact_items() {
            add(item.get().map(|g| g.table_name()));
        }
        return ("TransactGetItems", tables);
    }
    if let Some(i) = input.downcast_ref::<op::batch_get_item::BatchGetItemInput>() {
        for t in i.request_items().into_iter().flat_map(|m| m.keys()) {
            add(Some(t));
        }
        return ("BatchGetItem", tables);
    }
    if let Some(i) = input.downcast_ref::<op::batch_write_item::BatchWriteItemInput>() {
        for t in i.request_items().into_iter().flat_map(|m| m.keys()) {
            add(Some(t));
        }
        return ("BatchWriteItem", tables);
    }
    ("DynamoDB", tables)
}

impl Intercept for DynamoSpans {
    fn name(&self) -> &'static str {
        "DynamoSpans"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Background polls (the sweeper's and the relay's queries) run outside any span: they
        // would be a trace each, every few hundred milliseconds. Operations of a request, a use
        // case or an expiry get their span.
        if tracing::Span::current().is_none() {
            return Ok(());
        }
        let (operation, tables) = describe(context.input());
        let name = match tables.as_slice() {
            [one] => format!("{operation} {one}"),
            _ => operation.to_owned(),
        };
        let span = tracing::info_span!(
            target: "dynamodb",
            "DynamoDB",
            otel.name = %name,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            "db.system" = "dynamodb",
            "db.system.name" = "aws.dynamodb",
            "db.operation.name" = operation,
            "db.collection.name" = tables.first().map(String::as_str),
            "aws.dynamodb.table_names" = %tables.join(","),
            "rpc.system" = "aws-api",
            "rpc.service" = "DynamoDB",
            "rpc.method" = operation,
            "error.type" = tracing::field::Empty,
        );
        cfg.interceptor_state().store_put(OperationSpan(span));
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(OperationSpan(span)) = cfg.load::<OperationSpan>() {
            if let Some(Err(e)) = context.output_or_error() {
                span.record("otel.status_code", "ERROR");
                let kind = if e.is_timeout_error() {
                    "timeout"
                } else if e.is_operation_error() {
                    "operation"
                } else if e.is_connector_error() {
                    "connector"
                } else {
                    "response"
                };
                span.record("error.type", kind);
            }
        }
        cfg.interceptor_state().unset::<OperationSpan>();
        Ok(())
    }
}
