//! UpdateItem expressions built with every name and value as a placeholder (several
//! attribute names, such as `version`, are DynamoDB reserved words).

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;

/// One UpdateItem's SET and REMOVE clauses, and the names and values its expressions use.
#[derive(Default)]
pub struct Update {
    set: Vec<String>,
    remove: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Update {
    pub fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#{attribute}");
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    pub fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    pub fn set_or_remove(&mut self, attribute: &str, value: Option<AttributeValue>) {
        let name = self.name(attribute);
        match value {
            Some(value) => {
                let value = self.value(value);
                self.set.push(format!("{name} = {value}"));
            }
            None => self.remove.push(name),
        }
    }

    /// `request` with this update's expression, names and values.
    pub fn apply(self, request: UpdateItemFluentBuilder) -> UpdateItemFluentBuilder {
        let mut expression = String::new();
        if !self.set.is_empty() {
            expression = format!("SET {}", self.set.join(", "));
        }
        if !self.remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", self.remove.join(", ")));
        }
        request
            .update_expression(expression)
            .set_expression_attribute_names(Some(self.names))
            .set_expression_attribute_values(Some(self.values))
    }
}
